"""``snapcrawl bench`` in-process against the shared simulator: reports, plots, thresholds and exit codes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import snapcrawl
from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator


@pytest.fixture
def volumes(env: Simulator, tmp_path: Path) -> Path:
    """A file of five of the simulator's volume ids."""
    path = tmp_path / "volumes.txt"
    path.write_text("".join(f"{volume_id}\n" for volume_id in env.dataset.volume_ids[:5]), encoding="utf-8")
    return path


def test_open_loop_writes_report_and_summary(
    env: Simulator, volumes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An open-loop run exits 0, prints the summary on stderr and writes the JSON report."""
    out = tmp_path / "report.json"
    argv = ["bench", "--volumes", str(volumes), "--rate", "200", "--duration", "0.5", "--json", str(out)]
    assert main([*argv, "--no-progress", "--fail-if", "p99>60s", "--fail-if", "errors>1%"]) == 0
    err = capsys.readouterr().err
    assert "open loop at 200 req/s" in err
    assert "from intended send" in err and "scheduling lag" in err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["requests"] == 100
    assert data["status"] == {"200": 100}
    assert env.stats.requests == 100
    assert [result["breached"] for result in data["thresholds"]] == [False, False]


def test_breached_threshold_exits_1(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """A --fail-if condition that holds makes the exit status 1 and is named in the summary."""
    assert main(["bench", "--concurrency", "2", "--duration", "0.2", "--fail-if", "p50>1us"]) == 1
    assert "threshold 'p50>1us'" in capsys.readouterr().err


def test_throttled_threshold(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """A server's 429s count against --fail-if 'throttled>N%'."""
    env.faults = Faults(rate_limit=20.0, rate_burst=1)
    assert main(["bench", "--rate", "200", "--duration", "0.3", "--fail-if", "throttled>10%"]) == 1
    assert "BREACHED" in capsys.readouterr().err


def test_find_max_that_sustains_nothing_exits_1(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """When every step fails, find-max reports 0 req/s and exits 1, within its budget."""
    env.faults = Faults(error_rate=1.0)
    argv = ["bench", "--find-max", "--rate", "40", "--step-duration", "0.25", "--budget", "4", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "max sustainable: 0.0 req/s" in err
    assert "FAIL" in err


def test_rejected_credentials_exit_3(env: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong credentials are exit status 3, not a report of fast 401s."""
    monkeypatch.setenv("SCP_SECRET_KEY", "not-the-secret")
    assert main(["bench", "--rate", "100", "--duration", "0.1"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench"], "choose a load model"),
        (["bench", "--rate", "10", "--concurrency", "2"], "exclude each other"),
        (["bench", "--find-max", "--duration", "5"], "--step-duration"),
        (["bench", "--rate", "10", "--fail-if", "p99>5"], "time unit"),
        (["bench", "--rate", "10", "--plot", "out.svg"], ".png or .html"),
        (["bench", "--rate", "10", "--volumes", "/nonexistent/ids"], "cannot read"),
    ],
)
def test_usage_errors_exit_2(env: Simulator, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options are exit status 2 with one line naming the problem, before any request."""
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert env.stats.requests == 0


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_plot(env: Simulator, tmp_path: Path, suffix: str) -> None:
    """--plot draws a PNG image or an HTML page with the plot inline."""
    out = tmp_path / f"plot{suffix}"
    assert main(["bench", "--rate", "100", "--duration", "0.3", "--plot", str(out), "--no-progress"]) == 0
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n")
    else:
        assert b"<svg" in data and b"from intended send" in data


def test_plot_without_matplotlib_names_the_extra(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, --plot is a usage error naming the 'plot' extra, before any request."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--rate", "100", "--duration", "0.1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "pip install 'snapcrawl[plot]'" in capsys.readouterr().err
    assert env.stats.requests == 0


def test_bench_without_hdrhistogram_names_the_extra(
    env: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without hdrhistogram, bench is a usage error naming the 'bench' extra."""
    monkeypatch.setitem(sys.modules, "hdrh", None)
    monkeypatch.setitem(sys.modules, "hdrh.histogram", None)
    for name in [name for name in sys.modules if name.startswith("snapcrawl.bench")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(snapcrawl, "bench", raising=False)
    assert main(["bench", "--rate", "100", "--duration", "0.1"]) == 2
    assert "pip install 'snapcrawl[bench]'" in capsys.readouterr().err


def test_progress_text() -> None:
    """The live line names the step, the rate against its target, in flight, the last second's p50/p99, errors."""
    from snapcrawl.bench import Live  # noqa: PLC0415
    from snapcrawl.cli.bench import progress_text  # noqa: PLC0415

    live = Live(
        elapsed=2.0,
        target_rps=300.0,
        sent=600,
        completed=599,
        in_flight=1,
        throttled=2,
        failed=5,
        p99_ms=3.9,
        rate=297.0,
        p50_ms=1.2,
    )
    text = progress_text(live)
    assert "297 req/s (target 300)" in text and "in flight 1" in text
    assert "last s p50 1.2 ms p99 3.9 ms" in text and "errors 5" in text and "429s 2" in text
    assert progress_text(dataclasses.replace(live, step=4)).startswith("step 4 ")
