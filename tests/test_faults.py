"""The fault matrix: each fault alone and all together, on 2,000 volumes, against the simulator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import anyio
import pytest

from snapcrawl import Crawler, DecodeError, RetryPolicy, VolumeFailure
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from tests.helpers import collect

RETRY = RetryPolicy(max_retries=10, backoff_base=0.02, backoff_cap=0.5)
FAULTS = {
    "503s": Faults(error_rate=0.1),
    "dropped-connections": Faults(drop_rate=0.05),
    "timeouts": Faults(stall_rate=0.01, stall_seconds=3.0),
    "429-storm-retry-after-seconds": Faults(rate_limit=800, rate_burst=20),
    "429-storm-no-retry-after": Faults(rate_limit=800, rate_burst=20, retry_after="none"),
    "429-storm-retry-after-http-date": Faults(rate_limit=800, rate_burst=20, retry_after="http-date"),
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
    return Crawler(endpoint=sim.url, credentials=sim.credentials, retry=RETRY, timeout=1.0, **kwargs)  # type: ignore[arg-type]


async def _crawl_all(
    sim: Simulator, faults: Faults, **kwargs: object
) -> tuple[Crawler, Counter[str], list[VolumeFailure]]:
    sim.faults = faults
    sim.stats.reset()
    try:
        async with _crawler(sim, **kwargs) as crawler:
            with anyio.fail_after(90):
                got, failures = await collect(crawler, sim.dataset.volume_ids)
    finally:
        sim.faults = Faults()
    return crawler, Counter(s.id for s in got), failures


@pytest.mark.parametrize("name", list(FAULTS))
async def test_every_snapshot_exactly_once(sim: Simulator, name: str) -> None:
    """Whatever the fault, a server that eventually answers yields every snapshot exactly once."""
    crawler, ids, failures = await _crawl_all(sim, FAULTS[name])
    assert failures == []
    assert len(ids) == sim.dataset.total and set(ids.values()) == {1}
    if name != "latency":
        assert crawler.stats.retries > 0


async def test_503_bursts(sim: Simulator) -> None:
    """Spells during which every request gets 503 are ridden out."""

    async def bursts() -> None:
        for _ in range(3):
            await anyio.sleep(0.2)
            sim.faults = Faults(error_rate=1.0)
            await anyio.sleep(0.15)
            sim.faults = Faults(latency=0.002)

    sim.faults = Faults(latency=0.002)
    sim.stats.reset()
    async with _crawler(sim) as crawler, anyio.create_task_group() as tg:
        tg.start_soon(bursts)
        with anyio.fail_after(90):
            got, failures = await collect(crawler, sim.dataset.volume_ids)
            ids = Counter(s.id for s in got)
    sim.faults = Faults()
    assert sim.stats.by_status[503] > 10
    assert failures == [] and len(ids) == sim.dataset.total and set(ids.values()) == {1}


async def test_server_restart_mid_crawl(sim: Simulator) -> None:
    """The server stopped and started again on the same port: connections fail, then the crawl completes."""

    async def restart() -> None:
        await anyio.sleep(0.3)
        await sim.stop()
        await anyio.sleep(0.5)
        await sim.start()

    sim.faults = Faults(latency=0.003)
    async with _crawler(sim) as crawler, anyio.create_task_group() as tg:
        tg.start_soon(restart)
        with anyio.fail_after(90):
            got, failures = await collect(crawler, sim.dataset.volume_ids)
            ids = Counter(s.id for s in got)
    sim.faults = Faults()
    assert crawler.stats.retries > 0
    assert failures == [] and len(ids) == sim.dataset.total and set(ids.values()) == {1}


async def test_server_that_never_answers_is_a_named_failure(sim: Simulator) -> None:
    """Volumes whose requests always time out fail by name, without hanging the crawl."""
    sim.faults = Faults(stall_rate=1.0, stall_seconds=2.0)
    async with Crawler(
        endpoint=sim.url, credentials=sim.credentials, timeout=0.2, retry=RetryPolicy(max_retries=1, backoff_base=0.01)
    ) as crawler:
        with anyio.fail_after(30):
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
