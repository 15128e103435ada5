"""find-max against a simulated 300 req/s quota."""

from __future__ import annotations

import pytest

from snapcrawl.bench import BenchConfig, run
from snapcrawl.simulator import Faults, run_in_thread


async def test_find_max_finds_a_300_per_second_quota() -> None:
    """Against a 300 req/s quota (429 above it), find-max reports within 8% of 300, inside its time budget."""
    with run_in_thread(volumes=20, seed=4, faults=Faults(rate_limit=300.0, rate_burst=10)) as sim:
        config = BenchConfig(
            endpoint=sim.url,
            credentials=sim.credentials,
            volume_ids=tuple(sim.dataset.volume_ids),
            find_max=True,
            step_duration=2.0,
            budget=30.0,
        )
        report = await run(config)
    assert report.max_sustainable_rps is not None
    assert report.max_sustainable_rps == pytest.approx(300.0, rel=0.08)
    assert report.steps is not None
    assert any(not step.passed and step.throttled for step in report.steps)
    assert len(report.steps) * config.step_duration <= config.budget
    assert report.target_rps == report.max_sustainable_rps
