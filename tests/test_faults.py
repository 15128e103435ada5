"""The fault matrix (each fault alone and all together, on 2,000 volumes, against the simulator), outages and
spells triggered by the crawl's progress, and Retry-After."""

from __future__ import annotations

import email.utils
import json
import time
from collections import Counter
from collections.abc import Iterator

import anyio
import msgspec
import pytest

from snapcrawl import Crawler, Credentials, DecodeError, RetryPolicy, VolumeFailure
from snapcrawl.limits.local import TokenBucket
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from snapcrawl.transport import Response

from .fakes import FakeClock, FakeTransport, snapshot
from .helpers import collect

RETRY = RetryPolicy(max_retries=10, backoff_base=0.02, backoff_cap=0.5)
#: Survives an outage of a second or more (30 full-jitter waits capped at 0.5 s add up to far more), or a storm.
LONG_RETRY = RetryPolicy(max_retries=30, backoff_base=0.02, backoff_cap=0.5)
#: The server's limit in the 429 storms: far under what 64 concurrent requests sent at once need, however slow
#: the client, so throttling is certain; the storms crawl STORM_VOLUMES volumes to keep the test short.
STORM = Faults(rate_limit=100, rate_burst=20)
STORM_VOLUMES = 300
WALL = 1_700_000_000  # a fixed Unix time for the fake wall clock
LIMIT = 50  # seconds: inside pytest's 60 s per-test timeout
FAULTS = {
    "503s": Faults(error_rate=0.1),
    "dropped-connections": Faults(drop_rate=0.05),
    "timeouts": Faults(stall_rate=0.01, stall_seconds=3.0),
    "429-storm-retry-after-seconds": STORM,
    "429-storm-no-retry-after": msgspec.structs.replace(STORM, retry_after="none"),
    "429-storm-retry-after-http-date": msgspec.structs.replace(STORM, retry_after="http-date"),
    "truncated-bodies": Faults(truncate_rate=0.05),
    "html-error-pages": Faults(html_rate=0.05),
    "latency": Faults(latency=(0.0, 0.02)),
    "all-together": Faults(
        error_rate=0.03,
        drop_rate=0.02,
        truncate_rate=0.02,
        html_rate=0.02,
        stall_rate=0.005,
        stall_seconds=3.0,
        rate_limit=1000,
        rate_burst=30,
        latency=(0.0, 0.005),
    ),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """2,000 volumes for the fault matrix."""
    with run_in_thread(volumes=2000, seed=31) as simulator:
        yield simulator


def _crawler(sim: Simulator, **kwargs: object) -> Crawler:
    settings: dict[str, object] = {"retry": RETRY, "timeout": 1.0} | kwargs
    return Crawler(endpoint=sim.url, credentials=sim.credentials, **settings)  # type: ignore[arg-type]


async def _crawl_all(
    sim: Simulator, faults: Faults, volume_ids: list[str] | None = None, **kwargs: object
) -> tuple[Crawler, Counter[str], list[VolumeFailure]]:
    sim.faults = faults
    sim.stats.reset()
    try:
        async with _crawler(sim, **kwargs) as crawler:
            with anyio.fail_after(LIMIT):
                got, failures = await collect(crawler, volume_ids or sim.dataset.volume_ids)
    finally:
        sim.faults = Faults()
    return crawler, Counter(s.id for s in got), failures


def _total(sim: Simulator, volume_ids: list[str]) -> int:
    return sum(sim.dataset.count(volume_id) for volume_id in volume_ids)


@pytest.mark.parametrize("name", list(FAULTS))
async def test_every_snapshot_exactly_once(sim: Simulator, name: str) -> None:
    """Whatever the fault, a server that eventually answers yields every snapshot exactly once."""
    storm = name.startswith("429")
    volume_ids = sim.dataset.volume_ids[:STORM_VOLUMES] if storm else sim.dataset.volume_ids
    # In a storm 64 workers share 100 req/s: on a busy machine one request can lose more than 10 times running.
    crawler, ids, failures = await _crawl_all(sim, FAULTS[name], volume_ids, retry=LONG_RETRY if storm else RETRY)
    assert failures == []
    assert len(ids) == _total(sim, volume_ids) and set(ids.values()) == {1}
    if name != "latency":
        assert crawler.stats.retries > 0
    if storm:
        assert sim.stats.by_status[429] > 0 and crawler.stats.throttled > 0


async def test_503_spells(sim: Simulator) -> None:
    """Spells during which every request gets 503, started as the crawl progresses, are ridden out."""
    spell_starts = [anyio.Event() for _ in range(3)]
    per_spell = 25  # a spell lasts until the server has refused this many more requests

    async def spells() -> None:
        for number, start in enumerate(spell_starts, 1):
            await start.wait()
            sim.faults = Faults(error_rate=1.0)
            while sim.stats.by_status[503] < per_spell * number:  # noqa: ASYNC110 - a counter, no event
                await anyio.sleep(0.002)
            sim.faults = Faults(latency=0.002)

    sim.faults = Faults(latency=0.002)
    sim.stats.reset()
    ids: Counter[str] = Counter()
    thresholds = [sim.dataset.total * share // 100 for share in (20, 45, 70)]
    async with _crawler(sim, retry=LONG_RETRY) as crawler, anyio.create_task_group() as tg:
        tg.start_soon(spells)
        with anyio.fail_after(LIMIT):
            async with crawler.crawl(sim.dataset.volume_ids) as stream:
                async for snap in stream:
                    ids[snap.id] += 1
                    for threshold, start in zip(thresholds, spell_starts, strict=True):
                        if len(ids) == threshold:
                            start.set()
    sim.faults = Faults()
    assert all(start.is_set() for start in spell_starts)
    assert sim.stats.by_status[503] >= 3 * per_spell
    assert stream.failures == [] and len(ids) == sim.dataset.total and set(ids.values()) == {1}


async def test_server_restart_mid_crawl(sim: Simulator) -> None:
    """The server stopped (at a quarter of the crawl) and started again on the same port: connections fail,
    then the crawl completes."""
    outage = 0.5

    async def start_again() -> None:
        await anyio.sleep(outage)
        await sim.start()

    sim.faults = Faults(latency=0.003)
    sim.stats.reset()
    ids: Counter[str] = Counter()
    async with _crawler(sim, retry=LONG_RETRY) as crawler, anyio.create_task_group() as tg:
        with anyio.fail_after(LIMIT):
            async with crawler.crawl(sim.dataset.volume_ids) as stream:
                async for snap in stream:
                    ids[snap.id] += 1
                    if len(ids) == sim.dataset.total // 4:
                        # Stop while the consumer waits: the bounded stream holds the crawl back until it is done.
                        await sim.stop()
                        requests_before = sim.stats.requests
                        tg.start_soon(start_again)
    sim.faults = Faults()
    assert sim.running and sim.stats.requests > requests_before  # the rest was fetched after the restart
    assert crawler.stats.retries > 0
    assert stream.failures == [] and len(ids) == sim.dataset.total and set(ids.values()) == {1}


def _throttle_then_answer(retry_after: str, *, date: str | None = None) -> FakeTransport:
    """One 429 with ``Retry-After: retry_after``, then a page of one snapshot."""
    answers = iter([Response(429, b"", retry_after=retry_after, date=date)])

    def handler(url: str, headers: dict[str, str]) -> Response:
        return next(answers, Response(200, b'{"count": 1, "snapshots": [%b]}' % json.dumps(snapshot(1)).encode()))

    return FakeTransport(handler)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("7", 7.0), (email.utils.formatdate(WALL + 1000 + 30, usegmt=True), 30.0)],
    ids=["seconds", "http-date"],
)
async def test_retry_after_is_honoured(retry_after: str, expected: float) -> None:
    """A 429's Retry-After, in seconds or as an HTTP date, sets the wait before the retry (far over the backoff)."""
    transport, clock = _throttle_then_answer(retry_after), FakeClock()
    async with Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=Credentials(access_key="AK", secret_key="SK"),
        transport=transport,
        retry=RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.05),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=lambda: WALL + clock.now,  # moves with the fake clock, as signing needs
    ) as crawler:
        snapshots, _ = await collect(crawler, ["vol-1"])
    assert [snap.id for snap in snapshots] == ["vol-1-snap-00001"] and len(transport.requests) == 2
    assert max(clock.sleeps) == pytest.approx(expected, abs=0.01)
    assert clock.now - 1000.0 >= expected  # the retry was sent no earlier than the server asked


async def test_http_date_retry_after_uses_the_corrected_clock(sim: Simulator) -> None:
    """A client 10 minutes behind (corrected after a 401 by the server's Date) waits ~2 s on an HTTP-date
    Retry-After, not the 300 s cap that the uncorrected clock would compute."""
    clock = FakeClock()
    recorded = clock.sleeps

    async def sleep(seconds: float) -> None:
        # Waiting costs no real time, so once the Retry-After wait begins the server's bucket (real time) is
        # replaced by no faults at all; the limiter's pacing naps (at most 0.1 s) leave it.
        if seconds > TokenBucket.MAX_NAP:
            sim.faults = Faults()
        await clock.sleep(seconds)

    volume_id = min(sim.dataset.volume_ids, key=sim.dataset.count)
    sim.faults = Faults(rate_limit=1, rate_burst=1, retry_after="http-date")  # the 2nd request gets a 429
    sim.stats.reset()
    async with Crawler(
        endpoint=sim.url,
        credentials=sim.credentials,
        retry=RETRY,
        clock=clock,
        sleep=sleep,
        wall_clock=lambda: time.time() - 600,
    ) as crawler:
        with anyio.fail_after(LIMIT):
            got, failures = await collect(crawler, [volume_id])
    assert failures == [] and len(got) == sim.dataset.count(volume_id)
    assert sim.stats.by_status == {401: 1, 429: 1, 200: 1}
    # Retry-After is 1-2 s ahead on the server's clock; its Date has 1 s resolution, so the correction may add 1 s.
    assert recorded and 0.5 <= max(recorded) <= 5.0, recorded


async def test_server_that_never_answers_is_a_named_failure(sim: Simulator) -> None:
    """Volumes whose requests always time out fail by name, without hanging the crawl."""
    sim.faults = Faults(stall_rate=1.0, stall_seconds=2.0)
    async with Crawler(
        endpoint=sim.url, credentials=sim.credentials, timeout=0.2, retry=RetryPolicy(max_retries=1, backoff_base=0.01)
    ) as crawler:
        with anyio.fail_after(LIMIT):
            got, failures = await collect(crawler, sim.dataset.volume_ids[:5])
    sim.faults = Faults()
    assert got == []
    assert sorted(f.volume_id or "" for f in failures) == sorted(sim.dataset.volume_ids[:5])
    assert all("timeout" in str(f.error) for f in failures)


async def test_body_over_the_cap(sim: Simulator) -> None:
    """A body larger than the configured cap fails its volume by name; the rest completes."""
    huge = sim.dataset.volume_ids[7]
    faults = Faults(huge_volumes=frozenset({huge}), huge_body_bytes=2 * 1024 * 1024)
    _, ids, failures = await _crawl_all(sim, faults, max_body_bytes=1024 * 1024)
    assert [f.volume_id for f in failures] == [huge]
    assert isinstance(failures[0].error, DecodeError)
    assert "exceeds the cap" in str(failures[0].error)
    assert len(ids) == sim.dataset.total - sim.dataset.count(huge) and set(ids.values()) == {1}
