"""What one fetch reports: hooks per attempt, stats per page, and the one resend a 401 may earn."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import anyio
import pytest
from aioresponses import aioresponses

from snapcrawl import AiohttpTransport, AuthError, Credentials, Hooks, RetryPolicy, ServerError
from snapcrawl._events import Subscribers
from snapcrawl._fetch import PageFetcher
from snapcrawl._stats import CrawlStats
from snapcrawl.limits.local import LocalLimiter
from snapcrawl.signing import Signer
from tests.fakes import FakeClock

ENDPOINT = "http://scp.test"
PAGE = b'{"count":1,"snapshots":[{"id":"s1","volume_id":"v1","size":1,"created_at":"2025-01-01T00:00:00Z"}]}'
QUERY = "limit=100&volume_id=v1"
WIRE_URL = f"{ENDPOINT}/v1/snapshots?{QUERY}"


class Recorder:
    """Every hook call, as (hook, arguments without the timing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=lambda event: self.calls.append(("request", event.volume_id, event.page)),
            on_response=lambda event: self.calls.append(("response", event.volume_id, event.page, event.status)),
        )


def _fetcher(transport: AiohttpTransport, hooks: Hooks | None = None, retries: int = 3) -> PageFetcher:
    clock = FakeClock()
    wall = iter(range(1_753_174_800_000, 1_753_174_900_000, 7))  # a new millisecond for every signature
    return PageFetcher(
        endpoint=ENDPOINT,
        signer=Signer(
            Credentials(access_key="AK", secret_key="SK"), api_version="1.3", clock=lambda: next(wall) / 1000
        ),
        transport=transport,
        limiter=LocalLimiter(None, clock=clock, sleep=clock.sleep),
        in_flight=anyio.Semaphore(4),
        retry=RetryPolicy(max_retries=retries),
        events=Subscribers([hooks]) if hooks else None,
        sleep=clock.sleep,
        rng=random.Random(1),
    )


async def test_hooks_see_each_attempt_and_its_answer(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """A dropped connection, then a 200: two requests, answered by no status and by 200; one page counted."""
    recorder = Recorder()
    mocked.get(WIRE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(WIRE_URL, body=PAGE)
    stats = CrawlStats()
    await _fetcher(transport, recorder.hooks()).fetch(QUERY, volume_id="v1", page=3, stats=stats)
    assert recorder.calls == [
        ("request", "v1", 3),
        ("response", "v1", 3, None),
        ("request", "v1", 3),
        ("response", "v1", 3, 200),
    ]
    assert (stats.requests, stats.pages, stats.retries) == (2, 1, 1)


async def test_a_401_after_acceptance_is_resent_once_only(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """Accepted credentials make one 401 worth one fresh signature; a second 401 is the answer."""
    fetcher = _fetcher(transport)
    mocked.get(WIRE_URL, body=PAGE)
    await fetcher.fetch(QUERY, volume_id="v1", page=1, stats=CrawlStats())
    mocked.get(WIRE_URL, status=401, repeat=True)
    stats = CrawlStats()
    with anyio.fail_after(5), pytest.raises(AuthError):
        await fetcher.fetch(QUERY, volume_id="v1", page=2, stats=stats)
    assert stats.requests == 2


async def test_a_503_without_retry_after_is_a_server_error_not_a_throttle(
    mocked: aioresponses, transport: AiohttpTransport
) -> None:
    """Only a 503 that names a wait is a throttle: a bare one is retried on backoff, and the limiter hears none."""
    fetcher = _fetcher(transport, retries=1)
    mocked.get(WIRE_URL, status=503, repeat=True)
    stats = CrawlStats()
    with pytest.raises(ServerError):
        await fetcher.fetch(QUERY, volume_id="v1", page=1, stats=stats)
    assert (stats.requests, stats.retries, stats.throttled) == (2, 1, 0)
    limiter = fetcher.limiter
    assert isinstance(limiter, LocalLimiter)
    assert (limiter.rate, limiter.estimate) == (LocalLimiter.START_RATE, None)
