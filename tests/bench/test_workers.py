"""``--workers N``: processes that start together, share one schedule, and merge into one report."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import anyio
import pytest

from snapcrawl import AuthError, Credentials
from snapcrawl.bench import BenchConfig, Live, encode_report, load_reports, merge, run, run_workers
from snapcrawl.bench._workers import _sum
from snapcrawl.cli import main
from snapcrawl.simulator import Simulator


def _config(simulator: Simulator, **settings: object) -> BenchConfig:
    base: dict[str, object] = {
        "endpoint": simulator.url,
        "credentials": simulator.credentials,
        "volume_ids": tuple(simulator.dataset.volume_ids[:10]),
    }
    return BenchConfig(**(base | settings))  # type: ignore[arg-type]


async def test_two_workers_send_the_one_schedule_and_merge(simulator: Simulator) -> None:
    """Two workers at 200 req/s for 1 s send exactly 200 requests between them; the report is one run's."""
    report = await run_workers(_config(simulator, rate=200.0, duration=1.0, workers=2, fail_if=("errors>1%",)))
    assert report.workers == 2
    assert report.requests == 200
    assert report.status == {"200": 200}
    assert simulator.stats.requests == 200
    assert sum(row.due for row in report.timeline) == 200
    assert report.timeline[0].target_rps == pytest.approx(200.0)
    assert report.settings["workers"] == 2 and report.settings["rate"] == 200.0
    assert [(result.condition, result.breached) for result in report.thresholds] == [("errors>1%", False)]
    assert report.histograms is not None


async def test_a_staged_run_over_workers_keeps_the_ramp(simulator: Simulator) -> None:
    """Each worker's share of a ramp adds back up to the ramp."""
    report = await run_workers(_config(simulator, stages=((1.0, 100.0), (1.0, 100.0)), workers=2))
    assert report.requests == 150
    assert report.stages == [(1.0, 100.0), (1.0, 100.0)]
    assert [row.due for row in report.timeline[:2]] == [50, 100]


async def test_closed_loop_concurrency_is_shared(simulator: Simulator) -> None:
    """Three concurrent requests over two workers: 2 + 1."""
    report = await run_workers(_config(simulator, concurrency=3, duration=0.3, workers=2))
    assert report.mode == "closed"
    assert report.concurrency == 3
    assert report.requests > 0


async def test_a_workers_error_is_raised_as_its_kind(simulator: Simulator) -> None:
    """Rejected credentials in a worker are an AuthError in the parent, naming the worker."""
    wrong = Credentials(access_key="nobody", secret_key="wrong")
    bad = _config(simulator, rate=50.0, duration=0.2, workers=2, credentials=wrong)
    with pytest.raises(AuthError, match=r"worker [12]: every answer"):
        await run_workers(bad)


def test_workers_cli(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 2 prints one summary naming the workers, and saves one mergeable run."""
    out = tmp_path / "two.json"
    assert main(["bench", "--rate", "100", "--duration", "500ms", "--workers", "2", "--save", str(out)]) == 0
    assert "2 workers" in capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["requests"] == 50
    assert data["workers"] == 2
    assert main(["bench", "report", str(out), str(out)]) == 0
    assert "100 requests" in capsys.readouterr().err


async def test_machines_share_one_schedule_from_one_start(simulator: Simulator, tmp_path: Path) -> None:
    """Two 'machines' (worker 1/2 and 2/2, same rate, same --start-at) send the one schedule between them; their
    saved runs line up and merge into the whole run."""
    config = _config(simulator, rate=100.0, duration=1.0)
    start_at = time.time() + 0.3
    reports = []

    async def machine(index: int) -> None:
        reports.append(await run(config, share=(index, 2), start_at=start_at))

    async with anyio.create_task_group() as tg:
        for index in (0, 1):
            tg.start_soon(machine, index)
    assert sorted(report.requests for report in reports) == [50, 50]
    # The schedule's zero is the time given, however late a process woke: lateness counts as lag, not as a shift.
    assert all(report.started_at == pytest.approx(start_at, abs=0.05) for report in reports)
    paths = []
    for index, report in enumerate(reports):
        paths.append(str(tmp_path / f"machine-{index}.json"))
        await anyio.Path(paths[-1]).write_bytes(encode_report(report))
    merged = merge(load_reports(paths))
    assert merged.requests == 100
    assert merged.workers == 2
    assert merged.timeline[0].due == 100
    assert merged.timeline[0].target_rps == pytest.approx(100.0)
    assert merged.target_rps == pytest.approx(100.0, rel=0.1)


def test_worker_cli_sends_its_share(env: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """--worker 2/2 sends every second request of the schedule; --workers splits that share further."""
    start = env.stats.requests
    assert main(["bench", "--rate", "100", "--duration", "1s", "--worker", "2/2", "--no-progress"]) == 0
    assert env.stats.requests - start == 50
    assert main(["bench", "--rate", "100", "--duration", "1s", "--worker", "1/2", "--workers", "2"]) == 0
    assert env.stats.requests - start == 100
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate", "5", "--worker", "3/2"], "--worker '3/2': expected I/N"),
        (["--rate", "5", "--start-at", "2026-12-02T14:00:00"], "with its offset"),
        (["--rate", "5", "--start-at", "1000"], "s in the past"),
        (["--concurrency", "1", "--worker", "1/2"], "cannot be shared by 2 workers"),
    ],
)
def test_worker_and_start_at_errors(
    env: Simulator, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad --worker and --start-at values are one-line usage errors, exit 2."""
    try:
        status = main(["bench", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code  # type: ignore[assignment]
    assert status == 2
    assert message in capsys.readouterr().err


async def test_live_views_of_the_workers_are_summed(simulator: Simulator) -> None:
    """With a progress callback, each call sums every worker's view: sent counts add up to the run's."""
    seen: list[Live] = []
    report = await run_workers(_config(simulator, rate=100.0, duration=1.6, workers=2), progress=seen.append)
    assert seen
    assert all(live.sent <= report.requests for live in seen)
    assert all(live.target_rps == pytest.approx(100.0) for live in seen if live.elapsed < 1.5)


def test_live_views_add_up() -> None:
    """Counts and rates add up over the workers; p50 and p99 are the worst worker's."""
    one = Live(elapsed=1.0, target_rps=50.0, sent=50, completed=48, in_flight=2, throttled=1, failed=0, p99_ms=9.0)
    two = dataclasses.replace(one, elapsed=1.1, sent=49, failed=3, p99_ms=12.0, rate=40.0, p50_ms=4.0)
    total = _sum({0: one, 1: two})
    assert (total.sent, total.completed, total.in_flight, total.throttled, total.failed) == (99, 96, 4, 2, 3)
    assert (total.target_rps, total.rate, total.p50_ms, total.p99_ms, total.elapsed) == (100.0, 40.0, 4.0, 12.0, 1.1)


async def test_a_late_start_counts_as_lag_not_as_a_shifted_schedule(simulator: Simulator) -> None:
    """A worker that begins half a second after the agreed start keeps that start as its zero: its first
    requests are half a second late (scheduling lag, latency from the intended send), its timeline not shifted."""
    start_at = time.time() - 0.5
    report = await run(_config(simulator, rate=100.0, duration=1.0), start_at=start_at)
    assert report.started_at == pytest.approx(start_at, abs=0.05)
    assert report.scheduling_lag_ms.max >= 450.0
    assert report.latency_ms.max >= 450.0
    assert report.requests == 100
