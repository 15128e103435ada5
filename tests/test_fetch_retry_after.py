"""A 503 carrying Retry-After is a throttle, as gateways announce maintenance: its wait is honoured.

Without this, a ``Retry-After: 60`` on a 503 would be retried on sub-second backoff until the retries ran out
and the volume failed. A short one delays the request it answered; a long one pauses the limiter, so that no
other request goes out before the server said it would be back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import anyio
import pytest
from aioresponses import aioresponses

from snapcrawl import AiohttpTransport, Crawler, Credentials, Hooks, RetryPolicy
from snapcrawl._events import Subscribers
from snapcrawl._fetch import PageFetcher
from snapcrawl._stats import CrawlStats
from snapcrawl.limits.local import LocalLimiter
from snapcrawl.signing import Signer
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from tests.fakes import FakeClock

ENDPOINT = "http://scp.test"
PAGE = b'{"count":1,"snapshots":[{"id":"s1","volume_id":"v1","size":1,"created_at":"2025-01-01T00:00:00Z"}]}'
WIRE_URL = f"{ENDPOINT}/v1/snapshots?limit=100&volume_id=v1"


class Sleeps:
    """The fetcher's own sleeps, recorded without moving any clock (so the limiter's waits show apart)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(("retry_after", "paused"), [(2, False), (60, True)], ids=["short", "long"])
async def test_a_503_with_retry_after_is_a_throttle(
    mocked: aioresponses, transport: AiohttpTransport, retry_after: int, paused: bool
) -> None:
    """The retry waits Retry-After, counts as throttled, and only the long wait pauses every request."""
    clock, sleeps = FakeClock(), Sleeps()  # the limiter's clock and sleeps; the fetcher's sleeps
    limiter = LocalLimiter(None, clock=clock, sleep=clock.sleep)
    throttles: list[float | None] = []
    fetcher = PageFetcher(
        endpoint=ENDPOINT,
        signer=Signer(Credentials(access_key="AK", secret_key="SK"), api_version="1.3"),
        transport=transport,
        limiter=limiter,
        in_flight=anyio.Semaphore(4),
        retry=RetryPolicy(max_retries=3),
        events=Subscribers([Hooks(on_throttle=lambda event: throttles.append(event.retry_after))]),
        sleep=sleeps,
        rng=random.Random(1),
    )
    mocked.get(WIRE_URL, status=503, headers={"Retry-After": str(retry_after)})
    mocked.get(WIRE_URL, body=PAGE)
    stats = CrawlStats()

    page = await fetcher.fetch("limit=100&volume_id=v1", volume_id="v1", page=1, stats=stats)

    assert [snapshot.id for snapshot in page.snapshots] == ["s1"]
    assert (stats.throttled, stats.retries) == (1, 1)
    assert throttles == [retry_after]
    assert sleeps.seconds == [retry_after]  # the request answered waits what the server asked, not a backoff
    # A pause holds the limiter itself: the retry (like any request) waits for its end on the limiter's clock.
    assert (sum(clock.sleeps) >= retry_after) is paused


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """Eight volumes, all of them answered in one page or a few."""
    with run_in_thread(volumes=8, seed=3) as sim:
        yield sim


@pytest.mark.parametrize("window", [1.0, 4.0], ids=["short", "long"])
async def test_a_crawl_waits_out_a_maintenance_window(simulator: Simulator, window: float) -> None:
    """Every request of the first wave gets one 503 with Retry-After, waits it out, and the crawl completes.

    No request is sent into the window twice: with 503s retried on backoff instead (at most 3.1 s over five
    retries), the long window would fail every volume of the first wave.
    """
    sim = simulator
    sim.faults = Faults(maintenance=((0.0, window),))
    sim.stats.reset()
    throttles: list[float | None] = []
    hooks = Hooks(on_throttle=lambda event: throttles.append(event.retry_after))
    crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=4, page_size=2, hooks=hooks)
    with anyio.fail_after(30):
        async with crawler:
            result = await crawler.crawl_into(sim.dataset.volume_ids, lambda page: None)

    assert result.failures == []
    assert result.stats.snapshots == sim.dataset.total
    assert 1 <= len(throttles) <= 4  # one per request in flight when the window opened
    # Retry-After counts down to the window's end (a request arriving late, on a busy machine, is told less).
    waits = [after for after in throttles if after is not None]
    assert len(waits) == len(throttles)
    assert max(waits) == window
    assert all(1.0 <= after <= window for after in waits)
    assert result.stats.throttled == sim.stats.by_status[503] == len(throttles)
