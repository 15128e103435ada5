"""One long-lived Crawler serving many crawls, as a service embeds it: isolation, no leaks, hooks, metrics."""

from __future__ import annotations

import gc
import tracemalloc
from collections import defaultdict

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint

from snapcrawl import Crawler, Page, RetryPolicy, VolumeFailure
from snapcrawl.otel import otel_hooks
from snapcrawl.simulator import Faults, Simulator
from tests.helpers import collect

FAST_RETRY = RetryPolicy(max_retries=3, backoff_base=0.001, backoff_cap=0.01)
#: Enough tries that a 20% error rate never fails a volume (0.2**13 per request).
PATIENT = RetryPolicy(max_retries=12, backoff_base=0.001, backoff_cap=0.01)


def _crawler(sim: Simulator, **kwargs: object) -> Crawler:
    settings: dict[str, object] = {"endpoint": sim.url, "credentials": sim.credentials, "retry": FAST_RETRY}
    return Crawler(**settings | kwargs)  # type: ignore[arg-type]


async def test_two_concurrent_crawls_report_only_their_own(simulator: Simulator) -> None:
    """Two crawls running at once on one Crawler each count exactly their own snapshots and failures."""
    ids = simulator.dataset.volume_ids
    left, right = ids[:150], ids[150:]
    poison_left, poison_right = left[3], right[7]
    simulator.faults = Faults(fail_volumes=frozenset({poison_left, poison_right}))
    results: dict[str, tuple[list[str], list[VolumeFailure]]] = {}

    async def crawl(name: str, crawler: Crawler, volume_ids: list[str]) -> None:
        snapshots, failures = await collect(crawler, volume_ids)
        results[name] = ([s.id for s in snapshots], failures)

    async with _crawler(simulator, concurrency=8) as crawler, anyio.create_task_group() as tg:
        tg.start_soon(crawl, "left", crawler, left)
        tg.start_soon(crawl, "right", crawler, right)
    for name, volumes, poison in (("left", left, poison_left), ("right", right, poison_right)):
        got, failures = results[name]
        expected = sum(simulator.dataset.count(v) for v in volumes if v != poison)
        assert len(got) == len(set(got)) == expected
        assert [f.volume_id for f in failures] == [poison]
    # The crawler's totals add both crawls up, and stay a fixed-size object.
    assert crawler.stats.snapshots == sum(len(got) for got, _ in results.values())
    assert crawler.stats.volumes_failed == 2


async def test_crawl_into_returns_its_own_result(simulator: Simulator) -> None:
    """crawl_into hands each page to a plain function and returns that crawl's stats and failures."""
    poison = simulator.dataset.volume_ids[2]
    simulator.faults = Faults(fail_volumes=frozenset({poison}))
    pages: list[Page] = []
    async with _crawler(simulator) as crawler:
        result = await crawler.crawl_into(simulator.dataset.volume_ids[:20], pages.append)
    assert [f.volume_id for f in result.failures] == [poison] and result.failures[0].where == f"volume {poison}"
    assert result.stats.snapshots == sum(len(p.snapshots) for p in pages)
    assert result.stats.volumes_done == 19 and result.stats.volumes_failed == 1


async def test_cancelled_crawls_leave_memory_flat(simulator: Simulator) -> None:
    """200 crawl_into calls cancelled from outside, mid-flight, leave nothing behind in the Crawler."""
    simulator.faults = Faults(latency=(0.001, 0.003))
    ids = simulator.dataset.volume_ids

    async def cancelled_crawls(crawler: Crawler, n: int) -> None:
        for _ in range(n):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(crawler.crawl_into, ids, lambda page: None)
                    await anyio.sleep(0.002)
                    scope.cancel()

    async with _crawler(simulator, concurrency=8) as crawler:
        await cancelled_crawls(crawler, 20)  # warm up: caches, pools, interned strings
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            await cancelled_crawls(crawler, 200)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename") if "snapcrawl" in str(stat.traceback))
    # A leak of one crawl's state (its id set, run, streams) per call would be hundreds of KB over 200 calls.
    assert grown < 64 * 1024, f"snapcrawl's memory grew by {grown} bytes over 200 cancelled crawls"


async def test_abandoned_rate_limited_crawls_do_not_slow_the_next(simulator: Simulator) -> None:
    """After five crawls at 20 req/s abandoned early, a fresh crawl of 20 volumes waits ~1 s in all, not 16 s."""
    waits: defaultdict[int, float] = defaultdict(
        float
    )  # seconds each task asked to sleep, summed (the limiter naps in slices)

    async def recording_sleep(seconds: float) -> None:
        waits[anyio.get_current_task().id] += seconds
        await anyio.sleep(seconds)

    one_page = [v for v in simulator.dataset.volume_ids if simulator.dataset.count(v) < 100][:20]
    async with _crawler(simulator, rate_limit=20, burst=1, concurrency=20, sleep=recording_sleep) as crawler:
        for _ in range(5):
            with anyio.move_on_after(0.2):
                await collect(crawler, simulator.dataset.volume_ids)
        await anyio.sleep(1.1)  # the bucket refills: whatever was granted before is spent
        waits.clear()
        _, failures = await collect(crawler, one_page)
    assert not failures
    # 20 requests at 20/s with a burst of 1: the last one waits about (20 - 1) / 20 s; no abandoned debt on top.
    longest = max(waits.values(), default=0.0)
    assert longest < 2.0, f"a request waited {longest:.1f} s: abandoned reservations were kept"


async def test_opentelemetry_metrics(simulator: Simulator) -> None:
    """The otel hooks export request durations by status, retries, throttles and volumes under OTel names."""
    simulator.faults = Faults(error_rate=0.2)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with _crawler(simulator, hooks=otel_hooks(simulator.url, meter_provider=provider)) as crawler:
        result = await crawler.crawl_into(simulator.dataset.volume_ids[:50], lambda page: None)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    durations = [
        p for p in metrics["http.client.request.duration"].data.data_points if isinstance(p, HistogramDataPoint)
    ]
    by_status = {p.attributes["http.response.status_code"]: p.count for p in durations}  # type: ignore[index]
    assert sum(by_status.values()) == result.stats.requests and by_status[503] > 0
    assert all(p.attributes["server.address"] == "127.0.0.1" for p in durations)  # type: ignore[index]
    retries = [p for p in metrics["snapcrawl.client.retries"].data.data_points if isinstance(p, NumberDataPoint)]
    assert sum(p.value for p in retries) == result.stats.retries
    volumes = [p for p in metrics["snapcrawl.client.volumes"].data.data_points if isinstance(p, NumberDataPoint)]
    assert sum(p.value for p in volumes) == 50


@pytest.mark.parametrize("source", ["list", "generator", "async"])
async def test_ids_from_any_iterable(simulator: Simulator, source: str) -> None:
    """Lists, blocking generators (pulled off the event loop) and async iterables give the same crawl."""
    ids = simulator.dataset.volume_ids[:30]

    def generator() -> object:
        yield from ids

    async def agen() -> object:
        for volume_id in ids:
            yield volume_id

    volume_ids = {"list": list(ids), "generator": generator(), "async": agen()}[source]
    async with _crawler(simulator) as crawler:
        snapshots, failures = await collect(crawler, volume_ids)
    assert not failures and len(snapshots) == sum(simulator.dataset.count(v) for v in ids)


async def test_settings_files_are_read_off_the_event_loop(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """A Crawler built without endpoint or credentials reads ~/.scpconf in a worker thread, not on the loop."""
    import threading  # noqa: PLC0415 - only this test needs it

    from snapcrawl import _crawler  # noqa: PLC0415

    loop_thread = threading.current_thread()
    readers: list[threading.Thread] = []

    def load_credentials() -> object:
        readers.append(threading.current_thread())
        return simulator.credentials

    def resolve_endpoint(*args: object, **kwargs: object) -> str:
        readers.append(threading.current_thread())
        return simulator.url

    monkeypatch.setattr(_crawler, "load_credentials", load_credentials)
    monkeypatch.setattr(_crawler, "resolve_endpoint", resolve_endpoint)
    crawler = Crawler()
    assert readers == [] and "<from the environment>" in repr(crawler)
    async with crawler:
        assert crawler.endpoint == simulator.url
        volume_id = max(simulator.dataset.volume_ids, key=simulator.dataset.count)
        got = [s async for s in crawler.list_snapshots(volume_id)]
    assert len(got) == simulator.dataset.count(volume_id)
    assert len(readers) == 2 and loop_thread not in readers
