"""Running one client on the client CPU against a simulator, and reading back what it did.

A *client* is one of :data:`CLIENTS`, run through :mod:`benchmarks.suite._timed` (so its clock starts after its
imports); :func:`drive_run` runs snapcrawl as a library through :mod:`benchmarks.clients.drive`, with request
timestamps.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..helpers.harness import CLIENT_CPUS, REPO_ROOT, SimulatorProcess, client_env, core_seconds, run_pinned
from ._bench import Bench

__all__ = ["BASELINE", "CLIENTS", "client_run", "drive_run", "interference"]

#: ``snapcrawl`` is the CLI as installed with its ``fast`` extra (uvloop); ``snapcrawl-asyncio`` the same CLI on
#: asyncio's own event loop (``--loop asyncio``), as a plain ``pip install snapcrawl`` runs it.
CLIENTS: Final = ("snapcrawl", "snapcrawl-asyncio", "naive", "ceiling")
#: The CLI of another checkout of snapcrawl (``--baseline DIR``), with this checkout's benchmark harness.
BASELINE: Final = "snapcrawl-baseline"


def _client_command(
    client: str,
    sim: SimulatorProcess,
    *,
    out: Path,
    report: Path,
    concurrency: int,
    page_size: int,
    timed: Sequence[str],
) -> list[str]:
    args = [
        "--endpoint", sim.url, "--volumes", str(sim.volume_file), "--out", str(out),
        "--page-size", str(page_size), "--concurrency", str(concurrency),
    ]  # fmt: skip
    if client.startswith("snapcrawl"):
        args.append("--no-progress")
    if client == "snapcrawl-asyncio":
        args += ["--loop", "asyncio"]
    if client.startswith("snapcrawl"):
        client = "snapcrawl"
    return [sys.executable, "-m", "benchmarks.suite._timed", "--report", str(report), *timed, client, *args]


def _baseline_path(bench: Bench) -> Path:
    """A directory holding only ``snapcrawl``, linked to the baseline's: the client runs in it and has it first on
    ``PYTHONPATH`` (``python -m`` puts the working directory first of all), so it imports the baseline's
    package while ``benchmarks`` still comes from this checkout."""
    if bench.baseline is None:
        raise ValueError(f"the {BASELINE} client needs --baseline DIR")
    shim = bench.workdir / "baseline-path"
    if not shim.exists():
        shim.mkdir()
        (shim / "snapcrawl").symlink_to(bench.baseline.resolve() / "snapcrawl", target_is_directory=True)
    return shim


def client_run(
    bench: Bench,
    client: str,
    sim: SimulatorProcess,
    label: str,
    *,
    concurrency: int | None = None,
    timed: Sequence[str] = (),
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one client (through ``benchmarks.suite._timed``) on the client CPU against ``sim``, check its output, and
    return its numbers; ``ok`` is false if it failed or lost or duplicated a snapshot."""
    plan = bench.plan
    total = sim.dataset().total
    out, report = bench.workdir / f"{client}.jsonl", bench.workdir / f"{client}.report.json"
    cmd = _client_command(
        client,
        sim,
        out=out,
        report=report,
        concurrency=concurrency or plan.concurrency,
        page_size=plan.page_size,
        timed=timed,
    )
    cwd = _baseline_path(bench) if client == BASELINE else REPO_ROOT
    env = client_env(cwd, REPO_ROOT)
    server_before, core_before = sim.cpu(), core_seconds(CLIENT_CPUS)
    proc = run_pinned(
        cmd,
        cpus=CLIENT_CPUS,
        timeout=timeout or 60 + total / 2_000,
        logs=bench.workdir / client,
        env=env,
        report=report,
        cwd=cwd,
    )
    server_cpu = sim.cpu() - server_before
    core_after = core_seconds(CLIENT_CPUS)
    # CPU time on the client's core that was not the client's: another process got in the way.
    foreign = max(0.0, core_after[0] - core_before[0] - proc.cpu)
    stolen = core_after[1] - core_before[1]
    lines, lines_ok = bench.verify(f"{label} {client}", out, total)
    data = proc.report
    if not proc.ok or "elapsed" not in data or not data.get("requests"):
        bench.check(f"{label} {client} ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        return {"ok": False, "returncode": proc.returncode}
    if client == BASELINE and bench.baseline is not None:
        imported = Path(data.get("module") or "/").resolve()
        if not imported.is_relative_to(bench.baseline.resolve()):
            bench.check(f"{label} {client} ran the baseline", False, f"it imported snapcrawl from {imported}")
            return {"ok": False, "returncode": proc.returncode}
    requests = int(data["requests"])
    elapsed, cpu = float(data["elapsed"]), float(data["cpu"])
    return {
        "ok": lines_ok,
        "elapsed": elapsed,
        "cpu": cpu,
        "requests": requests,
        "snapshots": lines,
        "server_cpu": server_cpu,
        "snapshots_per_s": lines / elapsed,
        "requests_per_s": requests / elapsed,
        "client_us_per_request": cpu / max(requests, 1) * 1e6,
        "server_us_per_request": server_cpu / max(requests, 1) * 1e6,
        "client_cpu_util": cpu / elapsed,
        "server_cpu_util": server_cpu / elapsed,
        "process_wall": proc.wall,
        "process_cpu": proc.cpu,
        "peak_rss_mb": proc.peak_rss_mb,
        "foreign_cpu_on_client_core": foreign,
        "stolen_on_client_core": stolen,
        **({"profile": data["profile"]} if "profile" in data else {}),
    }


def interference(run: dict[str, Any]) -> str:
    """A warning when something else used the client's core during a run (10 ms /proc/stat resolution)."""
    other = run["foreign_cpu_on_client_core"] + run["stolen_on_client_core"]
    if other > max(0.03, 0.03 * run["process_wall"]):
        return f"  !! {other * 1000:.0f} ms of other load on the client's CPU"
    return ""


def drive_run(
    bench: Bench, sim: SimulatorProcess, name: str, *, timeout: float, extra: Sequence[str] = ()
) -> tuple[dict[str, Any], float]:
    """Run ``benchmarks.clients.drive --timestamps`` on the client CPU against ``sim``; its report, the server's CPU
    s."""
    plan = bench.plan
    slug = re.sub(r"[^\w.-]+", "-", name)
    out, report = bench.workdir / f"{slug}.jsonl", bench.workdir / f"{slug}.report.json"
    cmd = [
        sys.executable, "-m", "benchmarks.clients.drive", "--endpoint", sim.url, "--volumes", str(sim.volume_file),
        "--out", str(out), "--report", str(report), "--concurrency", str(plan.concurrency),
        "--page-size", str(plan.page_size), "--timestamps", *extra,
    ]  # fmt: skip
    server_before = sim.cpu()
    proc = run_pinned(cmd, cpus=CLIENT_CPUS, timeout=timeout, logs=bench.workdir / slug, report=report)
    server_cpu = sim.cpu() - server_before
    bench.verify(name, out, sim.dataset().total)
    if not proc.ok or "requests" not in proc.report:
        bench.check(f"{name} ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        return {}, server_cpu
    return proc.report, server_cpu
