"""The crawler against the real simulator on 127.0.0.1: completeness, isolation, limits and cancellation."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from snapcrawl import (
    AuthError,
    ConfigError,
    Crawler,
    Credentials,
    DecodeError,
    RetryPolicy,
    ServerError,
    Snapshot,
)
from snapcrawl._volumes import ID_BATCH
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from tests.helpers import collect
from tests.logs import capture_logs

FAST_RETRY = RetryPolicy(max_retries=6, backoff_base=0.005, backoff_cap=0.05)
SORTS = [None, *(f"{key}:{way}" for key in ("created_at", "name", "size", "status", "id") for way in ("asc", "desc"))]


def _crawler(sim: Simulator, **kwargs: object) -> Crawler:
    settings: dict[str, object] = {"endpoint": sim.url, "credentials": sim.credentials, "retry": FAST_RETRY}
    settings.update(kwargs)
    return Crawler(**settings)  # type: ignore[arg-type]


def _busiest(sim: Simulator, n: int = 3) -> list[str]:
    return sorted(sim.dataset.volume_ids, key=sim.dataset.count, reverse=True)[:n]


@pytest.mark.parametrize("sort", SORTS)
async def test_list_every_snapshot_once_in_server_order(simulator: Simulator, sort: str | None) -> None:
    """Each volume lists every snapshot exactly once, in the server's order, whatever the sort."""
    async with _crawler(simulator, page_size=7) as crawler:
        for volume_id in _busiest(simulator, 2):
            got = [s.id async for s in crawler.list_snapshots(volume_id, sort=sort)]
            async with _crawler(simulator, page_size=1000) as one_page:
                expected = [s.id async for s in one_page.list_snapshots(volume_id, sort=sort)]
            assert got == expected
            assert len(got) == len(set(got)) == simulator.dataset.count(volume_id)


async def test_list_with_name_filter(simulator: Simulator) -> None:
    """The name filter returns only snapshots of that name."""
    volume_id = _busiest(simulator, 1)[0]
    async with _crawler(simulator) as crawler:
        first = [s async for s in crawler.list_snapshots(volume_id)]
        name = next(s.name for s in first if s.name)
        named = [s async for s in crawler.list_snapshots(volume_id, name=name)]
    assert named and all(s.name == name for s in named)
    assert len(named) == sum(1 for s in first if s.name == name)


async def test_list_without_count(simulator: Simulator) -> None:
    """Without counts, the walk ends on a short page and still finds everything."""
    volume_id = _busiest(simulator, 1)[0]
    async with _crawler(simulator, page_size=10) as crawler:
        got = [s.id async for s in crawler.list_snapshots(volume_id, with_count=False)]
    assert len(set(got)) == len(got) == simulator.dataset.count(volume_id)


async def test_crawl_all_volumes_exactly_once(simulator: Simulator) -> None:
    """A fan-out over every volume yields each snapshot exactly once, and the stream's stats say so."""
    async with (
        _crawler(simulator, page_size=20, concurrency=16) as crawler,
        crawler.crawl(simulator.dataset.volume_ids) as stream,
    ):
        ids = Counter([s.id async for s in stream])
    assert len(ids) == simulator.dataset.total and set(ids.values()) == {1}
    assert stream.failures == []
    assert stream.stats.volumes_done == len(simulator.dataset.volume_ids)
    assert stream.stats.snapshots == simulator.dataset.total
    assert crawler.stats.snapshots == simulator.dataset.total  # the crawler's totals include finished crawls


async def test_crawl_whole_account(simulator: Simulator) -> None:
    """volume_ids=None fetches the whole account, the pages after the first concurrently by offset."""
    simulator.faults = Faults(latency=(0.002, 0.005))
    async with _crawler(simulator, page_size=50, concurrency=8) as crawler, crawler.crawl(None) as stream:
        ids = Counter([s.id async for s in stream])
    assert len(ids) == simulator.dataset.total and set(ids.values()) == {1}
    assert simulator.stats.max_in_flight > 1
    assert stream.stats.volumes_done == 1 and stream.stats.snapshots_expected == simulator.dataset.total


async def test_crawl_async_iterable_with_duplicates_and_bad_ids(simulator: Simulator) -> None:
    """Ids may come from an async generator; duplicates are crawled once and bad ids fail alone."""
    volume_ids = simulator.dataset.volume_ids[:40]

    async def ids() -> AsyncIterator[str]:
        for volume_id in [*volume_ids, *volume_ids[:10], "", "x" * 10_000]:
            yield volume_id

    async with _crawler(simulator) as crawler:
        snapshots, failures = await collect(crawler, ids())
    got = Counter(s.id for s in snapshots)
    expected = sum(simulator.dataset.count(v) for v in volume_ids)
    assert len(got) == expected and set(got.values()) <= {1}
    # An invalid id is recorded under a bounded key (what a checkpoint can hold), not in full.
    assert sorted(f.volume_id or "" for f in failures) == ["", "x" * 64 + "... (10000 characters)"]
    assert all(isinstance(f.error, ConfigError) for f in failures)


async def test_lazy_generator_is_not_materialised(simulator: Simulator) -> None:
    """A generator of ids is consumed only as fast as the workers need them."""
    pulled = 0

    def ids() -> Iterator[str]:
        nonlocal pulled
        for volume_id in simulator.dataset.volume_ids * 1000:
            pulled += 1
            yield volume_id

    async with _crawler(simulator, concurrency=4) as crawler, crawler.crawl(ids()) as stream:
        async for _ in stream:
            break
    # Pulled in batches off the event loop: a couple of batches ahead at most, never the 300,000 ids.
    assert pulled <= 2 * ID_BATCH + 4


async def test_bad_credentials_stop_the_crawl(simulator: Simulator) -> None:
    """Rejected credentials raise AuthError from the stream after very few requests."""
    wrong = Credentials(access_key=simulator.credentials.access_key, secret_key="wrong-secret")
    async with _crawler(simulator, credentials=wrong, concurrency=8) as crawler:
        with pytest.raises(AuthError, match="secret key"):
            await collect(crawler, simulator.dataset.volume_ids)
    assert simulator.stats.requests <= 8 + 8


async def test_bad_credentials_list(simulator: Simulator) -> None:
    """A single-volume listing raises AuthError with the hint on key and clock."""
    wrong = Credentials(access_key="nobody", secret_key="nothing")
    async with _crawler(simulator, credentials=wrong) as crawler:
        with pytest.raises(AuthError, match="clock"):
            [s async for s in crawler.list_snapshots(simulator.dataset.volume_ids[0])]


async def test_skewed_clock_is_corrected(simulator: Simulator) -> None:
    """A clock 10 minutes off is measured from the server's Date, corrected once, and the crawl completes."""
    with capture_logs() as logs:
        async with _crawler(simulator, wall_clock=lambda: time.time() - 600) as crawler:
            got, failures = await collect(crawler, simulator.dataset.volume_ids[:50])
    assert len(got) == sum(simulator.dataset.count(v) for v in simulator.dataset.volume_ids[:50])
    warnings = [e for e in logs if e["event"] == "clock.skew_corrected"]
    assert len(warnings) == 1 and 590 < warnings[0]["skew_s"] < 610
    assert failures == []


async def test_malformed_page_names_volume_and_page(simulator: Simulator) -> None:
    """A malformed body raises DecodeError naming the volume and the page."""
    volume_id = simulator.dataset.volume_ids[3]
    simulator.faults = Faults(malformed_volumes=frozenset({volume_id}))
    async with _crawler(simulator, retry=RetryPolicy(max_retries=1, backoff_base=0.001)) as crawler:
        with pytest.raises(DecodeError) as info:
            [s async for s in crawler.list_snapshots(volume_id)]
    assert info.value.volume_id == volume_id and info.value.page == 1
    assert volume_id in str(info.value) and "page 1" in str(info.value)


async def test_poison_and_malformed_volumes_fail_alone(simulator: Simulator) -> None:
    """A volume that always fails and one that never decodes are recorded; every other volume completes."""
    poison, malformed = simulator.dataset.volume_ids[5], simulator.dataset.volume_ids[6]
    simulator.faults = Faults(fail_volumes=frozenset({poison}), malformed_volumes=frozenset({malformed}))
    async with _crawler(simulator) as crawler:
        snapshots, failed = await collect(crawler, simulator.dataset.volume_ids)
    got = Counter(s.id for s in snapshots)
    failures = {f.volume_id: f for f in failed}
    assert set(failures) == {poison, malformed}
    assert isinstance(failures[poison].error, ServerError) and isinstance(failures[malformed].error, DecodeError)
    assert failures[poison].pages_done == 0
    healthy = [v for v in simulator.dataset.volume_ids if v not in failures]
    assert len(got) == sum(simulator.dataset.count(v) for v in healthy) and set(got.values()) <= {1}


async def test_in_flight_never_exceeds_concurrency(simulator: Simulator) -> None:
    """The server never sees more than `concurrency` requests at once."""
    simulator.faults = Faults(latency=(0.002, 0.01))
    async with _crawler(simulator, concurrency=5) as crawler:
        await collect(crawler, simulator.dataset.volume_ids[:120])
    assert simulator.stats.max_in_flight == 5


async def test_rate_limit_holds_over_the_crawl(simulator: Simulator) -> None:
    """Told 150 req/s with a burst of 10, the server sees no more than that over the crawl, and close to it.

    Counted at the server over the whole crawl, so that a loaded machine's scheduling jitter (which bunches
    arrivals within a second) cannot make it flaky; the exact one-second-window property of the bucket is
    tested on a fake clock in tests/limits, and measured across processes in benchmarks/studies/quota.py.
    """
    async with _crawler(simulator, rate_limit=150, burst=10, page_size=5) as crawler:
        await collect(crawler, simulator.dataset.volume_ids)
    arrivals = simulator.stats.arrivals
    assert len(arrivals) > 300
    seconds = arrivals[-1] - arrivals[0]
    assert len(arrivals) <= 10 + 150 * seconds * 1.03  # the bucket's bound, and 3% for jitter at the two ends
    assert len(arrivals) >= 0.8 * 150 * seconds  # and the rate told is used


async def test_leaving_the_block_cancels_the_crawl(simulator: Simulator) -> None:
    """Leaving the stream's block (with the crawler still open) cancels its requests: the server sees them go."""
    async with _crawler(simulator, concurrency=16) as crawler:
        async with crawler.crawl(simulator.dataset.volume_ids) as stream:
            async for _ in stream:
                simulator.faults = Faults(latency=30.0)  # every later request hangs until cancelled
                break
            with anyio.fail_after(10):
                while not simulator.stats.in_flight:  # noqa: ASYNC110 - polling another thread's counter
                    await anyio.sleep(0.01)
        # The block has been left: nothing of the crawl is in flight any more, and the crawler still works.
        with anyio.fail_after(10):
            while simulator.stats.in_flight:  # noqa: ASYNC110 - polling another thread's counter
                await anyio.sleep(0.01)
        simulator.faults = Faults()
        got = [s async for s in crawler.list_snapshots(simulator.dataset.volume_ids[0])]
    assert len(got) == simulator.dataset.count(simulator.dataset.volume_ids[0])


async def test_consumer_cancellation_ends_the_crawl(simulator: Simulator) -> None:
    """Cancelling the consumer mid-crawl ends the crawl: every request it had in flight is abandoned."""
    simulator.faults = Faults(latency=30.0)
    with anyio.CancelScope() as scope:
        async with _crawler(simulator, concurrency=8) as crawler, crawler.crawl(simulator.dataset.volume_ids) as s:
            with anyio.fail_after(10):
                while simulator.stats.in_flight < 8:  # noqa: ASYNC110 - polling another thread's counter
                    await anyio.sleep(0.01)
            scope.cancel()
            async for _ in s:
                pass
    assert scope.cancelled_caught
    with anyio.fail_after(10):
        while simulator.stats.in_flight:  # noqa: ASYNC110 - polling another thread's counter
            await anyio.sleep(0.01)


async def test_slow_consumer_applies_backpressure(simulator: Simulator) -> None:
    """With a slow consumer the crawl runs ahead by at most the buffer plus one page per worker."""
    page_size, workers, buffer = 5, 4, 2
    async with _crawler(simulator, concurrency=workers, page_size=page_size) as crawler:
        async with crawler.crawl(simulator.dataset.volume_ids, buffer_pages=buffer) as stream:
            consumed = pages = 0
            async for page in stream.pages():
                consumed += len(page.snapshots)
                pages += 1
                await anyio.sleep(0.02)
                # Fetched but not consumed: pages in the buffer, plus one held by each blocked worker.
                assert stream.stats.snapshots - consumed <= (buffer + workers) * page_size
                if pages == 15:
                    break
        assert stream.stats.snapshots < simulator.dataset.total / 2


async def test_errors_in_the_body_propagate_unwrapped(simulator: Simulator) -> None:
    """An exception raised inside `async with Crawler` reaches the caller as itself, not as a group."""
    with pytest.raises(KeyError):  # noqa: PT012 - the raise must happen inside the crawler's context
        async with _crawler(simulator) as crawler, crawler.crawl(simulator.dataset.volume_ids[:3]) as stream:
            async for _ in stream:
                raise KeyError("mine")


async def test_usage_errors() -> None:
    """Mistakes are ConfigErrors raised before any request (a simulator of its own, so no other test's requests
    can arrive meanwhile)."""
    async with Simulator(volumes=3) as simulator:
        await _usage_errors(simulator)


async def _usage_errors(simulator: Simulator) -> None:
    with pytest.raises(ConfigError, match=r"1.2 or later"):
        async with _crawler(simulator, api_version="1.1") as crawler:
            crawler.crawl(["v"], sort="name:asc")
    with pytest.raises(ConfigError, match="page_size"):
        _crawler(simulator, page_size=1001)
    with pytest.raises(ConfigError, match="async with"):
        _crawler(simulator).crawl(["v"])
    async with _crawler(simulator) as crawler:
        with pytest.raises(ConfigError, match="not a single string"):
            crawler.crawl("vol-1")
        with pytest.raises(ConfigError, match="not a single string"):
            await crawler.crawl_into(b"vol-1", lambda page: None)
        with pytest.raises(ConfigError, match=r"async with crawler\.crawl"):
            async for _ in crawler.crawl(["v"]):
                pass
        with pytest.raises(ConfigError, match="rate_limit or limiter"):
            _crawler(simulator, rate_limit=5, limiter=crawler.limiter)
        with pytest.raises(ConfigError, match="Scp-Signature"):
            _crawler(simulator, headers={"Scp-Signature": "x"})
    assert simulator.stats.requests == 0


async def test_deprecated_version_warns_once(simulator: Simulator) -> None:
    """A version past its not-before date logs one warning per crawler and still works."""
    with capture_logs() as logs:
        async with _crawler(simulator, api_version="1.0", wall_clock=lambda: 1.9e9) as crawler:
            [s async for s in crawler.list_snapshots(simulator.dataset.volume_ids[0])]
            [s async for s in crawler.list_snapshots(simulator.dataset.volume_ids[1])]
    assert [e["event"] for e in logs].count("api_version.deprecated") == 1
    with capture_logs() as logs:
        _crawler(simulator, api_version="1.0", wall_clock=lambda: 1.7e9)  # 2023: still before its not-before date
    assert "api_version.deprecated" not in [e["event"] for e in logs]


async def test_snapshots_are_typed(simulator: Simulator) -> None:
    """The stream yields Snapshot structs with timezone-aware timestamps."""
    async with _crawler(simulator) as crawler:
        snaps, _ = await collect(crawler, _busiest(simulator, 1))
    assert snaps and all(type(s) is Snapshot and s.created_at.tzinfo is not None for s in snaps)


@pytest.fixture(scope="module")
def big_simulator() -> Iterator[Simulator]:
    """2,500 volumes for the crawls under faults."""
    with run_in_thread(volumes=2500, seed=11) as sim:
        yield sim


async def test_faults_together_lose_nothing(big_simulator: Simulator) -> None:
    """503s, dropped connections, 429 throttling and latency together: every snapshot exactly once."""
    sim = big_simulator
    sim.faults = Faults(rate_limit=1500, rate_burst=50, error_rate=0.03, drop_rate=0.02, latency=(0.0, 0.004))
    sim.stats.reset()
    try:
        async with _crawler(sim, retry=RetryPolicy(max_retries=8, backoff_base=0.01, backoff_cap=0.5)) as crawler:
            with anyio.fail_after(50):
                snapshots, failures = await collect(crawler, sim.dataset.volume_ids)
    finally:
        sim.faults = Faults()
    ids = Counter(s.id for s in snapshots)
    assert failures == []
    assert len(ids) == sim.dataset.total and set(ids.values()) == {1}
    assert sim.stats.by_status[503] > 0 and sim.stats.dropped > 0
    assert crawler.stats.retries > 0


async def test_far_above_quota_few_throttles(big_simulator: Simulator) -> None:
    """A crawl with no client cap against a 300 req/s quota adapts and finishes with few 429s."""
    sim = big_simulator
    sim.faults = Faults(rate_limit=300, rate_burst=20)
    sim.stats.reset()
    try:
        async with _crawler(sim, retry=RetryPolicy(max_retries=10, backoff_base=0.05, backoff_cap=2.0)) as crawler:
            with anyio.fail_after(50):
                snapshots, failures = await collect(crawler, sim.dataset.volume_ids[:1200])
    finally:
        sim.faults = Faults()
    ids = Counter(s.id for s in snapshots)
    assert failures == [] and set(ids.values()) == {1}
    throttled = sim.stats.by_status[429]
    assert throttled < 0.1 * sim.stats.requests


async def test_request_lines_only_when_debug_is_on(simulator: Simulator) -> None:
    """One line per request costs a call and a dict: built only when snapcrawl's logger is at debug."""
    async with _crawler(simulator) as crawler:
        assert crawler._fetcher is not None and not crawler._fetcher.events.response_received
    with capture_logs(logging.DEBUG):
        async with _crawler(simulator) as crawler:
            assert crawler._fetcher is not None and crawler._fetcher.events.response_received


async def test_stats_are_timed_by_the_crawlers_clock(simulator: Simulator) -> None:
    """A crawl's start, end and elapsed time, and the crawler's totals, are all readings of the injected clock."""
    offset = 1_000_000.0
    readings: list[float] = []

    def clock() -> float:
        readings.append(time.monotonic() + offset)
        return readings[-1]

    async with _crawler(simulator, clock=clock) as crawler:
        result = await crawler.crawl_into(_busiest(simulator, 2), lambda page: None)
        async for _ in crawler.list_snapshots(_busiest(simulator, 1)[0]):
            pass
    stats = result.stats
    assert stats.started_at is not None and stats.ended_at is not None
    assert {stats.started_at, stats.ended_at} <= set(readings)
    assert 0 <= stats.elapsed == stats.ended_at - stats.started_at < offset
    assert crawler.stats.started_at == stats.started_at and 0 <= crawler.stats.elapsed < offset
