"""Stages: an open-loop arrival rate that ramps linearly (k6's ramping-arrival-rate), exact to the request."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from snapcrawl.bench import BenchConfig, Profile, run
from snapcrawl.cli import main
from snapcrawl.simulator import Simulator


def test_a_ramp_sends_the_area_under_its_rate() -> None:
    """0 -> 100/s over 10 s, hold 5 s, -> 0 over 10 s: 5, 15, ... 95, 100 x5, 95, ... 5 requests a second."""
    profile = Profile(((10.0, 100.0), (5.0, 100.0), (10.0, 0.0)))
    times = list(profile.times())
    assert len(times) == profile.total == 1500
    assert times == sorted(times)
    per_second = Counter(int(t) for t in times)
    expected = [*range(5, 100, 10), *[100] * 5, *range(95, 0, -10)]
    assert [per_second[s] for s in range(25)] == expected
    assert [round(target) for target in profile.second_targets(25)] == expected


def test_a_constant_rate_is_i_over_r() -> None:
    """One flat stage is the old schedule exactly: floor(rate * duration) requests at i / rate."""
    assert list(Profile.constant(200.0, 0.5).times()) == [i / 200.0 for i in range(100)]


def test_ramp_from_a_start_rate() -> None:
    """From 100/s to 300/s over 2 s: 400 requests, the gaps shrinking."""
    times = list(Profile(((2.0, 300.0),), start=100.0).times())
    assert len(times) == 400
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(0.01, rel=0.01)
    assert gaps[-1] == pytest.approx(1 / 300, rel=0.01)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_split_one_schedule_exactly(workers: int) -> None:
    """Workers that each take every n-th request together send the one schedule."""
    profile = Profile(((3.0, 200.0), (2.0, 0.0)))
    shares = [list(profile.times(share=(index, workers))) for index in range(workers)]
    assert sorted(t for share in shares for t in share) == list(profile.times())
    assert max(len(share) for share in shares) - min(len(share) for share in shares) <= 1


async def test_a_staged_run_follows_the_ramp(simulator: Simulator) -> None:
    """Against the simulator, the timeline's per-second due counts and targets follow the ramp, and every
    request due is sent; latency still counts from each intended send time."""
    config = BenchConfig(
        endpoint=simulator.url,
        credentials=simulator.credentials,
        volume_ids=tuple(simulator.dataset.volume_ids[:20]),
        stages=((2.0, 100.0), (1.0, 100.0), (1.0, 20.0)),
    )
    report = await run(config)
    assert report.mode == "open"
    assert report.requests == 260  # the area under the ramp: 100 + 100 + 60
    rows = report.timeline[:4]
    assert [row.due for row in rows] == [25, 75, 100, 60]
    assert [row.target_rps for row in rows] == [pytest.approx(25.0), 75.0, 100.0, 60.0]
    assert sum(row.sent for row in report.timeline) == 260
    assert report.stages == [(2.0, 100.0), (1.0, 100.0), (1.0, 20.0)]
    assert report.target_rps == pytest.approx(260 / 4)


def test_staged_cli_run(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--stages with units prints the ramp in the summary; --json holds target and due per second."""
    out = tmp_path / "staged.json"
    argv = ["bench", "--stages", "500ms:40,500ms:40", "--rate", "40", "--json", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "open loop ramping to 40/s over 500ms, 40/s over 500ms" in capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["requests"] == 40
    assert data["timeline"][0]["due"] == 40
    assert data["timeline"][0]["target_rps"] == pytest.approx(40.0)
