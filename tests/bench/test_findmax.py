"""find-max against a simulated 300 req/s quota, the simulator in a process of its own as in real use."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.helpers.harness import ALL_CPUS, SimulatorProcess
from snapcrawl.bench import BenchConfig, run, summary
from snapcrawl.simulator import DEMO_CREDENTIALS, Faults


async def test_find_max_finds_a_300_per_second_quota(tmp_path: Path) -> None:
    """Against a 300 req/s quota (429 above it), find-max reports within 8% of 300, inside its time budget."""
    faults = ("--rate-limit", "300", "--rate-burst", "10")
    with SimulatorProcess(volumes=20, workdir=tmp_path, seed=4, faults=faults, cpus=ALL_CPUS) as sim:
        config = BenchConfig(
            endpoint=sim.url,
            credentials=DEMO_CREDENTIALS,
            volume_ids=tuple(sim.dataset().volume_ids),
            find_max=True,
            step_duration=2.0,
            budget=30.0,
        )
        report = await run(config)
    assert report.max_sustainable_rps is not None
    steps = [(step.target_rps, step.requests, step.throttled, step.failed, step.reason) for step in report.steps or []]
    assert report.max_sustainable_rps == pytest.approx(300.0, rel=0.08), steps
    assert any(not step.passed and step.throttled for step in report.steps or [])
    assert len(steps) * config.step_duration <= config.budget
    assert report.target_rps == report.max_sustainable_rps


#: Latency that grows with load: 50 ms plus 10 ms for each other request in flight. By Little's law the latency
#: at r req/s is then 50 / (1 - 0.01 r) ms: 62 ms at 20/s, 100 ms at 50/s, 150 ms at 67/s, 250 ms at 80/s. The
#: base is high so that a busy machine's own stalls (tens of ms) do not decide the steps.
GROWING = ("--latency", "0.05", "--latency-per-in-flight", "0.01")


async def test_find_max_with_an_slo_against_latency_that_grows_with_load(tmp_path: Path) -> None:
    """--slo 'p99<150ms' stops where the p99 crosses 150 ms (about 60-67 req/s by the formula), where no request
    fails yet; the report names the SLO's value at the rate found, and failing steps say why."""
    with SimulatorProcess(volumes=20, workdir=tmp_path, seed=4, faults=GROWING, cpus=ALL_CPUS) as sim:
        config = BenchConfig(
            endpoint=sim.url,
            credentials=DEMO_CREDENTIALS,
            volume_ids=tuple(sim.dataset().volume_ids),
            find_max=True,
            rate=20.0,
            max_rate=400.0,
            slo=("p99<150ms",),
            step_duration=1.5,
            budget=40.0,
        )
        report = await run(config)
    steps = [(step.target_rps, step.p99_ms, step.reason) for step in report.steps or []]
    assert report.max_sustainable_rps is not None
    assert 30.0 <= report.max_sustainable_rps <= 80.0, steps  # short steps: the queue has not quite built up
    assert [result.condition for result in report.slo] == ["p99<150ms"]
    assert report.slo[0].value < 150.0 and not report.slo[0].breached
    assert report.slo[0].shown.endswith("ms")
    missed = [step for step in report.steps or [] if not step.passed]
    assert any("SLO 'p99<150ms' missed" in step.reason for step in missed), steps
    assert all(step.p99_ms < 150.0 for step in report.steps or [] if step.passed)
    assert all(not step.throttled and not step.failed for step in report.steps or [])  # only latency failed them
    assert "'p99<150ms' measured" in summary(report)


def test_slo_p99_is_an_alias_of_slo() -> None:
    """The older --slo-p99 MS is --slo 'p99<MSms'."""
    config = BenchConfig(endpoint="http://127.0.0.1:9", find_max=True, slo_p99_ms=250.0)
    assert config.slo == ("p99<250ms",)
    assert [threshold.limit for threshold in config.slos] == [250.0]


def test_latency_per_in_flight_must_not_be_negative() -> None:
    """The simulator option is validated like its other faults."""
    with pytest.raises(ValueError, match="latency_per_in_flight"):
        Faults(latency_per_in_flight=-0.001)
