"""Saved runs: lossless JSON, merged by ``snapcrawl bench report`` into exactly one run's worth of histogram."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from snapcrawl import ConfigError
from snapcrawl.bench import BenchConfig, decode_report, encode_report, load_reports, merge, run
from snapcrawl.bench._hist import Histogram, micros, spectrum_levels
from snapcrawl.bench._recorder import Recorder
from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator


@pytest.fixture
def samples(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every latency (µs, from the intended send) the recorders see, captured beside them."""
    seen: list[int] = []
    original = Recorder.on_done

    def on_done(
        self: Recorder, *, intended: float, sent: float, done: float, status: int | None, error: str | None
    ) -> None:
        seen.append(micros(done - intended))
        original(self, intended=intended, sent=sent, done=done, status=status, error=error)

    monkeypatch.setattr(Recorder, "on_done", on_done)
    return seen


async def _saved_run(simulator: Simulator, tmp_path: Path, name: str, latency: tuple[float, float]) -> Path:
    simulator.faults = Faults(latency=latency)
    config = BenchConfig(
        endpoint=simulator.url,
        credentials=simulator.credentials,
        volume_ids=tuple(simulator.dataset.volume_ids[:10]),
        rate=200.0,
        duration=0.5,
        percentiles=(50.0, 95.0),
    )
    path = tmp_path / name
    path.write_bytes(encode_report(await run(config)))
    return path


async def test_merged_percentiles_equal_one_histogram_of_both_runs(
    simulator: Simulator, tmp_path: Path, samples: list[int]
) -> None:
    """Two runs of different latency, saved and merged: every percentile, the count, max and the exact mean equal
    those of one histogram that recorded both runs' samples."""
    first = await _saved_run(simulator, tmp_path, "a.json", (0.001, 0.004))
    second = await _saved_run(simulator, tmp_path, "b.json", (0.010, 0.030))
    assert len(samples) == 200
    merged = merge(load_reports([str(first), str(second)]), percentiles=(50.0, 75.0, 95.0, 99.0, 99.9))
    both = Histogram()
    for value in samples:
        both.record(value)
    assert merged.requests == both.count == 200
    for level in spectrum_levels():
        assert merged.latency_at(level) == both.value_at(level), level
    assert merged.latency_ms.percentiles == {f"p{level:g}": both.value_at(level) for level in (50, 75, 95, 99, 99.9)}
    assert merged.latency_ms.mean == pytest.approx(sum(samples) / len(samples) / 1000)
    # and against the raw samples, within HDR's 0.1%
    ordered = sorted(samples)
    assert merged.latency_ms.p90 == pytest.approx(ordered[179] / 1000, rel=0.001)
    # neither run alone has the merged figures: the merge holds both
    runs = load_reports([str(first), str(second)])
    assert [run.requests for run in runs] == [100, 100]
    assert merged.latency_ms.mean == pytest.approx((runs[0].latency_ms.mean + runs[1].latency_ms.mean) / 2)


def _report_of(seconds: list[list[int]], started_at: float, target: float) -> bytes:
    """A saved run whose second ``s`` answered the latencies (µs) ``seconds[s]``, by recording them."""
    recorder = Recorder(0.0, targets=[target] * len(seconds))
    for index, latencies in enumerate(seconds):
        for i, value in enumerate(latencies):
            at = index + i / max(1, len(latencies))
            recorder.on_send(intended=at, at=at, lag=0.0, held_back=False)
            recorder.on_done(intended=at, sent=at, done=at + value / 1e6, status=200, error=None)
    from snapcrawl.bench._hist import figures  # noqa: PLC0415
    from snapcrawl.bench._report import BenchReport  # noqa: PLC0415

    report = BenchReport(
        mode="open",
        endpoint="http://127.0.0.1:9",
        requests=recorder.completed,
        duration_s=float(len(seconds)),
        target_rps=target,
        achieved_rps=recorder.completed / len(seconds),
        concurrency=None,
        max_in_flight=10,
        status={"200": recorder.completed},
        errors={},
        throttled=0,
        failed=0,
        held_back=0,
        timeline=recorder.timeline(),
        started_at=started_at,
        **figures(recorder.corrected, recorder.uncorrected, recorder.lag, (50.0,)),
    )
    return encode_report(report)


def test_timelines_line_up_by_wall_clock_and_add_up(tmp_path: Path) -> None:
    """Two workers that started together add second by second (targets too); a run that started 2 s later
    lands 2 s later, and the merged span is the whole of both."""
    rng = random.Random(7)
    a = [[rng.randrange(1000, 5000) for _ in range(50)] for _ in range(3)]
    b = [[rng.randrange(20_000, 40_000) for _ in range(30)] for _ in range(3)]
    (tmp_path / "a.json").write_bytes(_report_of(a, 1000.0, 50.0))
    (tmp_path / "b.json").write_bytes(_report_of(b, 1000.2, 30.0))
    (tmp_path / "c.json").write_bytes(_report_of(b, 1002.0, 30.0))
    together = merge(load_reports([str(tmp_path / "a.json"), str(tmp_path / "b.json")]))
    assert [row.completed for row in together.timeline] == [80, 80, 80]
    assert [row.target_rps for row in together.timeline] == [80.0, 80.0, 80.0]
    second = Histogram()
    for value in a[1] + b[1]:
        second.record(value)
    assert together.timeline[1].p99_ms == second.value_at(99.0)
    assert together.timeline[1].p50_ms == second.value_at(50.0)
    after = merge(load_reports([str(tmp_path / "a.json"), str(tmp_path / "c.json")]))
    assert [row.completed for row in after.timeline] == [50, 50, 80, 30, 30]
    assert after.duration_s == pytest.approx(5.0)
    assert after.achieved_rps == pytest.approx(240 / 5.0)


def test_bench_report_cli_merges_json_outputs(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json and --save outputs are inputs to 'bench report'; --json/--fail-if/--percentiles apply to the merge;
    the merged JSON is itself a valid input (the second run)."""
    first, second, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    assert main(["bench", "--rate", "100", "--duration", "300ms", "--json", str(first), "--no-progress"]) == 0
    assert main(["bench", "--rate", "100", "--duration", "0.2", "--save", str(second), "--no-progress"]) == 0
    capsys.readouterr()
    argv = ["bench", "report", str(first), str(second), "--json", str(merged), "--percentiles", "50,95,99.9"]
    assert main([*argv, "--fail-if", "p95>30s", "--fail-if", "errors>1%"]) == 0
    err = capsys.readouterr().err
    assert "50 requests" in err and "p95" in err
    data = json.loads(merged.read_text(encoding="utf-8"))
    assert data["requests"] == 50
    assert set(data["latency_ms"]["percentiles"]) == {"p50", "p95", "p99.9"}
    assert [result["shown"][-1] for result in data["thresholds"]] == ["s", "%"]
    assert main(["bench", "report", str(merged), "--fail-if", "p50>1us"]) == 1
    err = capsys.readouterr().err
    assert "threshold 'p50>1us'" in err
    assert "p95" in err  # the saved run's columns, when --percentiles is not given again
    again = decode_report(merged.read_bytes(), source="merged")
    assert merge([again], percentiles=(50.0, 95.0, 99.9)).latency_ms == msgspec.json.decode(
        json.dumps(data["latency_ms"]).encode(), type=type(again.latency_ms)
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "is not a snapcrawl bench report"),
        (b'{"mode": "open"}', "is not a snapcrawl bench report"),
    ],
)
def test_report_of_a_foreign_file_exits_2(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a saved run is named in a one-line error, exit 2."""
    path = tmp_path / "x.json"
    path.write_bytes(content)
    assert main(["bench", "report", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_a_report_without_histograms_is_refused(tmp_path: Path) -> None:
    """A JSON report from an older snapcrawl (no histograms) says to write it again."""
    data = json.loads(_report_of([[1000]], 0.0, 1.0))
    data["histograms"] = None
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="no saved histograms"):
        load_reports([str(path)])


def test_find_max_reports_are_not_merged(tmp_path: Path) -> None:
    """A find-max report holds only its best step: merging it would mislead."""
    report = decode_report(_report_of([[1000]], 0.0, 1.0), source="x")
    with pytest.raises(ConfigError, match="find-max"):
        merge([msgspec.structs.replace(report, mode="find-max")])


def test_lag_warnings_give_way_to_one_of_the_merged_lag() -> None:
    """Each run's scheduling-lag warning is replaced by one judged on the merged lag; other warnings stay, once."""
    report = decode_report(_report_of([[1000, 2000]], 0.0, 2.0), source="x")
    noisy = msgspec.structs.replace(
        report, warnings=["the load generator sent some requests late (scheduling lag p99 9 ms)", "3 held back"]
    )
    assert merge([noisy, noisy]).warnings == ["3 held back"]  # the recorded lag is 1 µs: nothing to warn of


def test_a_report_of_another_format_is_refused(tmp_path: Path) -> None:
    """A saved run of a format this snapcrawl does not read is named with both formats."""
    data = json.loads(_report_of([[1000]], 0.0, 1.0))
    data["format"] = 3
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="format 3; this snapcrawl reads format 2"):
        load_reports([str(path)])
