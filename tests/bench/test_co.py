"""HdrHistogram's coordinated-omission test against the simulator, with and without the in-flight cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.helpers.harness import ALL_CPUS, SimulatorProcess
from snapcrawl.bench import BenchConfig, run, run_workers
from snapcrawl.simulator import DEMO_CREDENTIALS

#: HdrHistogram's coordinated-omission scenario: quick answers (1-3 ms), one 2 s stall 3 s in.
CO_FAULTS = ("--latency", "0.001:0.003", "--pause", "3:2")


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[SimulatorProcess]:
    """A simulator in a process of its own (its pause clock starts at its first request), answering in 1-3 ms."""
    with SimulatorProcess(volumes=20, workdir=tmp_path, seed=3, faults=CO_FAULTS, cpus=ALL_CPUS) as sim:
        yield sim


def _config(sim: SimulatorProcess, **settings: object) -> BenchConfig:
    base: dict[str, object] = {
        "endpoint": sim.url,
        "credentials": DEMO_CREDENTIALS,
        "volume_ids": tuple(sim.dataset().volume_ids),
    }
    return BenchConfig(**(base | settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2])
async def test_coordinated_omission(stalling: SimulatorProcess, workers: int) -> None:
    """100 req/s for 10 s with a 2 s stall: p50 stays at a few ms, while p90 ~ 1 s, p99 ~ 1.9 s, max ~ 2 s.

    A tool that measured from the actual send and sent fewer requests during the stall would report p90 and
    p99 of a few milliseconds. Nothing held the sends back here, so the uncorrected figures agree. Two worker
    processes sharing the rate (and merging their histograms) measure the same.
    """
    config = _config(stalling, rate=100.0, duration=10.0, workers=workers)
    report = await (run(config) if workers == 1 else run_workers(config))
    assert report.workers == workers
    assert report.requests == 1000
    assert report.status == {"200": 1000}
    latency, uncorrected = report.latency_ms, report.latency_uncorrected_ms
    assert latency.p50 < 25.0
    # Wide enough for a busy machine (the bench's own delays add to every figure), yet a tool blind to the stall
    # would report p90 and p99 of a few milliseconds; only max is the same for both.
    assert 800.0 <= latency.p90 <= 1300.0
    assert 1700.0 <= latency.p99 <= 2200.0
    assert 1900.0 <= latency.max <= 3000.0
    assert report.held_back == 0
    assert uncorrected.p90 == pytest.approx(latency.p90, abs=100.0)
    stalled = [row.second for row in report.timeline if row.p50_ms > 200.0]
    assert stalled == [3, 4]  # the requests due during the pause, by their intended second
    assert sum(row.completed for row in report.timeline if row.second in (3, 4)) < 5  # none answered meanwhile


async def test_capped_sends_count_from_their_intended_time(stalling: SimulatorProcess) -> None:
    """With one request in flight, the stall holds the rest back: uncorrected p90 stays small, corrected does not."""
    report = await run(_config(stalling, rate=100.0, duration=6.0, max_in_flight=1))
    assert report.held_back > 150
    assert report.latency_ms.p90 > 500.0
    assert report.latency_uncorrected_ms.p90 < 100.0
    assert report.latency_uncorrected_ms.max > 1500.0
    assert any("held back" in warning for warning in report.warnings)
