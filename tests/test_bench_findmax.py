"""find-max against a simulated 300 req/s quota, the simulator in a process of its own as in real use."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._harness import ALL_CPUS, SimulatorProcess
from snapcrawl.bench import BenchConfig, run
from snapcrawl.simulator import DEMO_CREDENTIALS


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
