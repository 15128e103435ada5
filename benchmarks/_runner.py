"""The measurements, the printed table and the JSON report of ``python -m benchmarks``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

from snapcrawl.simulator import STATS_PATH

from ._harness import (
    ALL_CPUS,
    CLIENT_CPUS,
    REPO_ROOT,
    SERVER_CPUS,
    SimulatorProcess,
    core_seconds,
    count_lines_and_ids,
    expected_requests,
    run_pinned,
    volumes_for_requests,
)

__all__ = ["FULL", "NEEDS", "QUICK", "Plan", "main", "missing_modules"]

RESULTS: Final = Path(__file__).resolve().parent / "results"
#: ``snapcrawl`` is the CLI as installed with its ``fast`` extra (uvloop); ``snapcrawl-asyncio`` the same CLI on
#: asyncio's own event loop (``--loop asyncio``), as a plain ``pip install snapcrawl`` runs it.
CLIENTS: Final = ("snapcrawl", "snapcrawl-asyncio", "naive", "ceiling")
NAMES: Final = ("throughput", "latency", "ratelimit", "profile", "memory")
#: Modules a measurement needs beyond snapcrawl's own dependencies; the ``benchmarks`` extra declares them.
NEEDS: Final = {"profile": ("pyinstrument",)}
TARGETS: Final = {
    "vs_ceiling": 0.9,
    "vs_naive": 1.15,
    "latency_hiding": 0.95,
    "rate_accuracy": 0.02,
    "own_overhead_us": 40.0,
    "rss_mb": 150.0,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """How big each measurement is."""

    volumes: int = 10_000
    rounds: int = 7
    latency_seconds: float = 10.0
    rate_seconds: float = 10.0
    memory_volumes: tuple[int, int] = (10_000, 100_000)
    page_size: int = 100
    concurrency: int = 64
    rate: float = 300.0
    burst: int = 10
    seed: int = 0


FULL: Final = Plan()
QUICK: Final = Plan(volumes=2_000, rounds=3, latency_seconds=3.0, rate_seconds=3.0, memory_volumes=(2_000, 20_000))


def missing_modules(names: Sequence[str]) -> list[str]:
    """The modules the measurements ``names`` need that are not installed, so a run fails before it starts."""
    wanted = {module for name in names for module in NEEDS.get(name, ())}
    return sorted(module for module in wanted if importlib.util.find_spec(module) is None)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


class Bench:
    """Shared state of one benchmark run: the plan, a scratch directory, the simulators, the checks."""

    def __init__(self, plan: Plan, workdir: Path, stack: contextlib.ExitStack) -> None:
        self.plan = plan
        self.workdir = workdir
        self._stack = stack
        self._plain: SimulatorProcess | None = None
        self.checks: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    def check(self, name: str, ok: bool, detail: str) -> None:
        """Record a correctness check; failures are shouted at once and fail the run."""
        self.checks.append({"name": name, "ok": ok, "detail": detail})
        if not ok:
            _log(f"!!! CHECK FAILED: {name}: {detail}")

    def plain_simulator(self) -> SimulatorProcess:
        """The fault-free simulator of ``plan.volumes`` volumes, started on first use and shared."""
        if self._plain is None:
            self._plain = self.simulator(self.plan.volumes)
        return self._plain

    def simulator(self, volumes: int, faults: Sequence[str] = ()) -> SimulatorProcess:
        """A simulator subprocess that lives until the end of the run (or until its ``stop()``)."""
        sim = SimulatorProcess(volumes=volumes, seed=self.plan.seed, faults=faults, workdir=self.workdir)
        self._stack.enter_context(sim)
        _log(f"simulator {sim.url}: {volumes:,} volumes {' '.join(faults)} (started in {sim.start_seconds:.1f} s)")
        return sim

    def verify(self, name: str, out: Path, expected: int) -> tuple[int, bool]:
        """Check ``out`` holds ``expected`` lines with as many distinct snapshot ids (each exactly once); delete it."""
        try:
            lines, distinct = count_lines_and_ids(out)
        except (OSError, ValueError) as exc:  # missing, or not JSON Lines of snapshots
            lines, distinct, problem = -1, -1, f"unreadable output: {exc}"
        else:
            problem = "" if lines == distinct == expected else "  <-- MISMATCH"
        out.unlink(missing_ok=True)
        detail = f"{lines:,} lines, {distinct:,} distinct ids, expected {expected:,}{problem}"
        self.check(f"{name}: every snapshot exactly once", not problem, detail)
        return lines, not problem


# ---------------------------------------------------------------------------------------------------------------
# 1. Throughput
# ---------------------------------------------------------------------------------------------------------------


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
        client = "snapcrawl"
    return [sys.executable, "-m", "benchmarks._timed", "--report", str(report), *timed, client, *args]


def _client_run(
    bench: Bench,
    client: str,
    sim: SimulatorProcess,
    label: str,
    *,
    concurrency: int | None = None,
    timed: Sequence[str] = (),
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one client (through ``benchmarks._timed``) on the client CPU against ``sim``, check its output, and
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
    server_before, core_before = sim.cpu(), core_seconds(CLIENT_CPUS)
    proc = run_pinned(
        cmd, cpus=CLIENT_CPUS, timeout=timeout or 60 + total / 2_000, logs=bench.workdir / client, report=report
    )
    server_cpu = sim.cpu() - server_before
    core_after = core_seconds(CLIENT_CPUS)
    # CPU time on the client's core that was not the client's: another process got in the way.
    foreign = max(0.0, core_after[0] - core_before[0] - proc.cpu)
    stolen = core_after[1] - core_before[1]
    lines, lines_ok = bench.verify(f"{label} {client}", out, total)
    data = proc.report
    if not proc.ok or "elapsed" not in data:
        bench.check(f"{label} {client} ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        return {"ok": False, "returncode": proc.returncode}
    requests = int(data.get("requests") or 0)
    if not requests:  # the command line's summary line changed: count what a fault-free crawl takes
        requests = expected_requests(sim.dataset(), plan.page_size, until_short_page=client == "naive")
    elapsed, cpu = float(data["elapsed"]), float(data["cpu"])
    return {
        "ok": lines_ok,
        "requests_counted": bool(data.get("requests")),
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


_RETRIES_WHEN_DISTURBED: Final = 2


def _interference(run: dict[str, Any]) -> str:
    """A warning when something else used the client's core during a run (10 ms /proc/stat resolution)."""
    other = run["foreign_cpu_on_client_core"] + run["stolen_on_client_core"]
    if other > max(0.03, 0.03 * run["process_wall"]):
        return f"  !! {other * 1000:.0f} ms of other load on the client's CPU"
    return ""


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = [run[key] for run in runs if run.get("ok")]
    return statistics.median(values) if values else float("nan")


_SUMMARY_KEYS: Final = (
    "snapshots_per_s", "requests_per_s", "client_us_per_request", "server_us_per_request",
    "client_cpu_util", "server_cpu_util", "elapsed", "requests",
)  # fmt: skip


def measure_throughput(bench: Bench) -> None:
    """1. CPU-bound throughput of snapcrawl's CLI, the naive baseline and the ceiling, interleaved."""
    plan = bench.plan
    sim = bench.plain_simulator()
    dataset = sim.dataset()
    total = dataset.total
    expected = {
        "snapcrawl": expected_requests(dataset, plan.page_size),
        "snapcrawl-asyncio": expected_requests(dataset, plan.page_size),
        "naive": expected_requests(dataset, plan.page_size, until_short_page=True),
        "ceiling": expected_requests(dataset, plan.page_size),
    }
    runs: dict[str, list[dict[str, Any]]] = {client: [] for client in CLIENTS}
    for number in range(plan.rounds + 1):
        label = "warm-up" if number == 0 else f"round {number}"
        shift = number % len(CLIENTS)
        order = CLIENTS[shift:] + CLIENTS[:shift]
        for client in order:
            for attempt in range(1 + _RETRIES_WHEN_DISTURBED):
                run = _client_run(bench, client, sim, f"throughput {label}")
                if not run.get("ok") or not _interference(run) or attempt == _RETRIES_WHEN_DISTURBED:
                    break
                _log(f"throughput {label} {client}: disturbed by other load ({_interference(run).strip()}), again")
            run["attempts"] = attempt + 1
            if run.get("ok"):
                _log(
                    f"throughput {label:8} {client:9} {run['snapshots_per_s']:9,.0f} snapshots/s "
                    f"{run['requests_per_s']:7,.0f} req/s  client {run['client_us_per_request']:4.0f} µs/req "
                    f"server {run['server_us_per_request']:4.0f} µs/req" + _interference(run)
                )
                if run["requests"] and run["requests"] != expected[client]:
                    bench.check(
                        f"throughput {client} request count",
                        False,
                        f"{run['requests']} requests, {expected[client]} expected for a fault-free crawl",
                    )
            if number:
                runs[client].append(run)
    summary = {client: {key: _median(runs[client], key) for key in _SUMMARY_KEYS} for client in CLIENTS}
    ratios: dict[str, float] = {}
    for mine_name, prefix in (("snapcrawl", ""), ("snapcrawl-asyncio", "asyncio_")):
        for other in ("naive", "ceiling"):
            pairs = [
                mine["snapshots_per_s"] / theirs["snapshots_per_s"]
                for mine, theirs in zip(runs[mine_name], runs[other], strict=True)
                if mine.get("ok") and theirs.get("ok")
            ]
            ratios[f"{prefix}vs_{other}"] = statistics.median(pairs) if pairs else float("nan")
    bench.results["throughput"] = {
        "volumes": plan.volumes,
        "snapshots": total,
        "expected_requests": expected,
        "rounds": plan.rounds,
        "median": summary,
        "median_ratio": ratios,
        "runs_retried_for_other_load": sum(run.get("attempts", 1) > 1 for group in runs.values() for run in group),
        "runs_still_disturbed": sum(
            bool(run.get("ok") and _interference(run)) for group in runs.values() for run in group
        ),
        "targets": {
            "vs_ceiling": {"target": TARGETS["vs_ceiling"], "met": ratios["vs_ceiling"] >= TARGETS["vs_ceiling"]},
            "vs_naive": {"target": TARGETS["vs_naive"], "met": ratios["vs_naive"] >= TARGETS["vs_naive"]},
        },
        "runs": runs,
    }


# ---------------------------------------------------------------------------------------------------------------
# 2. Latency hiding
# ---------------------------------------------------------------------------------------------------------------


def _drive(
    bench: Bench, sim: SimulatorProcess, name: str, *, timeout: float, extra: Sequence[str] = ()
) -> tuple[dict[str, Any], float]:
    """Run ``benchmarks.drive --timestamps`` on the client CPU against ``sim``; its report, the server's CPU s."""
    plan = bench.plan
    slug = re.sub(r"[^\w.-]+", "-", name)
    out, report = bench.workdir / f"{slug}.jsonl", bench.workdir / f"{slug}.report.json"
    cmd = [
        sys.executable, "-m", "benchmarks.drive", "--endpoint", sim.url, "--volumes", str(sim.volume_file),
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


def measure_latency(bench: Bench) -> None:
    """2. Requests/s with simulated latency, against the bound concurrency / mean latency.

    The simulator's data is generated on first use, which would stall it; a warm-up crawl (the ceiling client,
    at 4x the concurrency) fills its caches first. The ceiling client at the same concurrency is the reference.
    """
    plan = bench.plan
    cases = []
    for spec, mean in (("0.18:0.22", 0.2), ("0.05", 0.05)):
        bound = plan.concurrency / mean
        volumes = volumes_for_requests(int(bound * plan.latency_seconds), plan.page_size, plan.seed)
        timeout = 60 + plan.latency_seconds * 4
        sim = bench.simulator(volumes, ("--latency", spec))
        _client_run(bench, "ceiling", sim, f"latency {spec} warm-up", concurrency=plan.concurrency * 4, timeout=timeout)
        report, server_cpu = _drive(bench, sim, f"latency {spec} snapcrawl", timeout=timeout)
        reference = _client_run(bench, "ceiling", sim, f"latency {spec}", timeout=timeout)
        sim.stop()
        if not report:
            continue
        achieved = report["requests"] / report["elapsed"]
        case = {
            "latency": spec,
            "mean_latency_s": mean,
            "volumes": volumes,
            "requests": report["requests"],
            "elapsed": report["elapsed"],
            "achieved_rps": achieved,
            "steady_rps": report.get("steady_rps"),
            "bound_rps": bound,
            "achieved_over_bound": achieved / bound,
            "steady_over_bound": (report.get("steady_rps") or 0) / bound,
            "mean_in_flight": report.get("mean_in_flight"),
            "latency_p50_ms": report.get("latency_p50_ms"),
            "client_cpu_util": report["cpu"] / report["elapsed"],
            "server_cpu_util": server_cpu / report["elapsed"],
            "ceiling_rps": reference.get("requests_per_s") if reference.get("ok") else None,
            "target": TARGETS["latency_hiding"],
            "met": achieved / bound >= TARGETS["latency_hiding"],
        }
        _log(
            f"latency {spec:9} {achieved:6,.0f} req/s of {bound:,.0f} ({achieved / bound:.1%}); "
            f"steady {case['steady_rps'] or 0:,.0f} req/s, {case['mean_in_flight'] or 0:.1f} in flight; "
            f"ceiling client {case['ceiling_rps'] or 0:,.0f} req/s"
        )
        cases.append(case)
    bench.results["latency"] = cases


# ---------------------------------------------------------------------------------------------------------------
# 3. Rate-limit accuracy
# ---------------------------------------------------------------------------------------------------------------


def _server_stats(url: str) -> dict[str, Any]:
    """The simulator's own counters (``snapcrawl.simulator.STATS_PATH``), read over loopback."""
    with urllib.request.urlopen(url + STATS_PATH, timeout=10) as response:  # noqa: S310 - our own loopback URL
        data: dict[str, Any] = json.loads(response.read())
    return data


def measure_ratelimit(bench: Bench) -> None:
    """3. snapcrawl at ``--rate``/``--burst``: achieved rate and the busiest one-second window, server-side."""
    plan = bench.plan
    volumes = volumes_for_requests(int(plan.rate * plan.rate_seconds), plan.page_size, plan.seed)
    out, report = bench.workdir / "ratelimit.jsonl", bench.workdir / "ratelimit.report.json"
    cmd = [
        sys.executable, "-m", "benchmarks.ratelimit", "--volumes", str(volumes), "--seed", str(plan.seed),
        "--rate", str(plan.rate), "--burst", str(plan.burst), "--concurrency", str(plan.concurrency),
        "--page-size", str(plan.page_size), "--out", str(out), "--report", str(report),
    ]  # fmt: skip
    proc = run_pinned(
        cmd, cpus=ALL_CPUS, timeout=60 + plan.rate_seconds * 3, logs=bench.workdir / "ratelimit", report=report
    )
    data = proc.report
    if not proc.ok or "requests" not in data:
        bench.check("ratelimit ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        out.unlink(missing_ok=True)
        return
    bench.verify("ratelimit", out, int(data["total_snapshots"]))
    # The same crawl with the simulator in its own process: no shared GIL delaying the client's event loop.
    sim = bench.simulator(volumes)
    before = _server_stats(sim.url)
    apart, _ = _drive(
        bench,
        sim,
        "ratelimit-apart",
        timeout=60 + plan.rate_seconds * 3,
        extra=("--rate", str(plan.rate), "--burst", str(plan.burst)),
    )
    after = _server_stats(sim.url)
    sim.stop()
    achieved = data["requests"] / data["elapsed"]
    ceiling = plan.rate + plan.burst
    result = {
        "rate": plan.rate,
        "burst": plan.burst,
        "volumes": volumes,
        "requests": data["requests"],
        "elapsed": data["elapsed"],
        "achieved_rps": achieved,
        "server_rps": data["server_rate"],
        "deviation": achieved / plan.rate - 1,
        "max_in_1s_window": data["max_in_1s_window"],
        "sent_max_in_1s_window": data.get("sent_max_in_1s_window"),
        "window_limit": ceiling,
        "by_status": data["by_status"],
        "apart_achieved_rps": apart["requests"] / apart["elapsed"] if apart else None,
        "apart_sent_max_in_1s_window": apart.get("sent_max_in_1s_window"),
        # Arrivals timestamped by a simulator in its own process, as a real server would see them.
        "apart_server_requests": after["requests"] - before["requests"],
        "apart_server_max_in_1s_window": after["max_in_1s_window"],
        "met_rate": abs(achieved / plan.rate - 1) <= TARGETS["rate_accuracy"],
        "met_window": after["max_in_1s_window"] <= ceiling,
    }
    _log(
        f"ratelimit {achieved:.1f} req/s over {data['elapsed']:.1f} s ({result['deviation']:+.2%}); "
        f"busiest 1 s window {data['max_in_1s_window']} (limit {ceiling:g})"
    )
    bench.results["ratelimit"] = result


# ---------------------------------------------------------------------------------------------------------------
# 4. Per-request overhead and memory
# ---------------------------------------------------------------------------------------------------------------


def measure_profile(bench: Bench) -> None:
    """4a. Client CPU per request of ``snapcrawl crawl`` and where it goes: a pyinstrument profile of the same
    run as in 1., its shares scaled to the unprofiled CPU time (median of 1., or a run of its own)."""
    sim = bench.plain_simulator()
    throughput = bench.results.get("throughput", {}).get("median", {})
    if throughput:
        cpu_us = throughput["snapcrawl"]["client_us_per_request"]
    else:
        _client_run(bench, "snapcrawl", sim, "profile warm-up")  # fills the simulator's caches
        plain = _client_run(bench, "snapcrawl", sim, "profile unprofiled")
        if not plain.get("ok"):
            return
        cpu_us = plain["client_us_per_request"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    timeout = 120 + sim.dataset().total / 500
    profiled = _client_run(bench, "snapcrawl", sim, "profile", timed=("--profile", str(RESULTS)), timeout=timeout)
    if not profiled.get("ok") or "profile" not in profiled:
        return
    prof = profiled["profile"]
    scale = cpu_us / profiled["client_us_per_request"]  # pyinstrument's own overhead inflates every call
    scaled = {name: fraction * cpu_us for name, fraction in prof["share"].items()}
    own = scaled.get("snapcrawl", 0.0)
    result: dict[str, Any] = {
        "requests": profiled["requests"],
        "client_cpu_us_per_request": cpu_us,
        "profiled_cpu_us_per_request": profiled["client_us_per_request"],
        "by_library_us_per_request": dict(sorted(scaled.items(), key=lambda item: item[1], reverse=True)),
        "own_us_per_request": own,
        "own_python_self_us_per_request": prof["snapcrawl_python_self_us_per_request"] * scale,
        "target_us": TARGETS["own_overhead_us"],
        "met": own < TARGETS["own_overhead_us"],
        "snapcrawl_functions": [
            {**item, "us_per_request_scaled": item["share"] * cpu_us} for item in prof["snapcrawl_functions"]
        ],
        "top_owners": [{**item, "us_per_request_scaled": item["share"] * cpu_us} for item in prof["top_owners"]],
        "raw": prof,
        "files": [str(RESULTS / "profile.txt"), str(RESULTS / "profile.html")],
    }
    if throughput:
        result["cpu_above_ceiling_us_per_request"] = cpu_us - throughput["ceiling"]["client_us_per_request"]
    _log(f"profile: {cpu_us:.0f} µs/request client CPU, {own:.1f} µs of it in snapcrawl's own code")
    bench.results["profile"] = result


def measure_memory(bench: Bench) -> None:
    """4b. Peak RSS of ``snapcrawl crawl`` writing a file, for a small and a large number of volumes."""
    plan = bench.plan
    cases = []
    for volumes in plan.memory_volumes:
        shared = volumes == plan.volumes
        sim = bench.plain_simulator() if shared else bench.simulator(volumes)
        dataset = sim.dataset()
        out = bench.workdir / f"memory-{volumes}.jsonl"
        cmd = [
            sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes", str(sim.volume_file),
            "--out", str(out), "--page-size", str(plan.page_size), "--concurrency", str(plan.concurrency),
            "--no-progress",
        ]  # fmt: skip
        proc = run_pinned(cmd, cpus=CLIENT_CPUS, timeout=120 + volumes / 150, logs=bench.workdir / f"memory-{volumes}")
        lines, _ = bench.verify(f"memory {volumes:,} volumes", out, dataset.total)
        if not proc.ok:
            bench.check(f"memory {volumes} ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        case = {
            "volumes": volumes,
            "snapshots": lines,
            "peak_rss_mb": proc.peak_rss_mb,
            "wall": proc.wall,
            "simulator_start_s": sim.start_seconds,
            "met": proc.ok and proc.peak_rss_mb < TARGETS["rss_mb"],
        }
        _log(f"memory {volumes:,} volumes: peak RSS {proc.peak_rss_mb:.1f} MB ({proc.wall:.1f} s)")
        cases.append(case)
        if not shared:
            sim.stop()
    bench.results["memory"] = cases


MEASUREMENTS: Final[dict[str, Callable[[Bench], None]]] = {
    "throughput": measure_throughput,
    "latency": measure_latency,
    "ratelimit": measure_ratelimit,
    "profile": measure_profile,
    "memory": measure_memory,
}


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _command(*cmd: str) -> str:
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """CPU model and count, kernel, memory, Python and library versions, the commit measured."""
    lscpu = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in _command("lscpu").splitlines())
        if value
    }
    memory_gb = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as file:
        memory_gb = int(file.readline().split()[1]) / 1024**2
    versions = {}
    for name in ("aiohttp", "msgspec", "anyio", "yarl", "structlog", "pyinstrument", "snapcrawl"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpu_model": lscpu.get("Model name", platform.processor()),
        "cpus": os.cpu_count(),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "memory_gb": round(memory_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "server_cpus": sorted(SERVER_CPUS),
        "client_cpus": sorted(CLIENT_CPUS),
        "loadavg_at_start": _command("cat", "/proc/loadavg"),
        "commit": _command("git", "rev-parse", "--short", "HEAD"),
        "local_changes": bool(_command("git", "status", "--porcelain", "--", "snapcrawl")),
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "   ") -> list[str]:
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def _render_throughput(data: dict[str, Any], plan: Plan) -> list[str]:
    lines = [
        f"1. Throughput: {data['volumes']:,} volumes, {data['snapshots']:,} snapshots, no latency, page size "
        f"{plan.page_size}, concurrency {plan.concurrency}",
        f"   median of {data['rounds']} interleaved rounds after a warm-up round; CPU per request measured after "
        "imports; server CPU from /proc",
    ]
    rows = []
    for client in CLIENTS:
        m = data["median"][client]
        rows.append([
            client, f"{m['snapshots_per_s']:,.0f}", f"{m['requests_per_s']:,.0f}", f"{m['elapsed']:.2f} s",
            f"{m['client_us_per_request']:.0f}", f"{m['server_us_per_request']:.0f}",
            f"{m['client_cpu_util']:.0%}", f"{m['server_cpu_util']:.0%}",
        ])  # fmt: skip
    headers = ["client", "snapshots/s", "requests/s", "elapsed", "client µs/req", "server µs/req", "client CPU",
               "server CPU"]  # fmt: skip
    lines += _table(headers, rows)
    if data.get("runs_retried_for_other_load") or data.get("runs_still_disturbed"):
        lines.append(
            f"   other load on the client's CPU: {data['runs_retried_for_other_load']} runs repeated, "
            f"{data['runs_still_disturbed']} kept although disturbed"
        )
    for other in ("ceiling", "naive"):
        ratio, target = data["median_ratio"][f"vs_{other}"], data["targets"][f"vs_{other}"]
        lines.append(
            f"   snapcrawl / {other:8} {ratio:5.2f}x  (target >= {target['target']:.2f}x)  {_verdict(target['met'])}"
        )
    for other in ("ceiling", "naive"):
        if (ratio := data["median_ratio"].get(f"asyncio_vs_{other}")) is not None:
            lines.append(f"   snapcrawl-asyncio / {other:8} {ratio:5.2f}x  (without uvloop, for reference)")
    return lines


def _render_latency(cases: list[dict[str, Any]], plan: Plan) -> list[str]:
    lines = [f"2. Latency hiding: snapcrawl (library, crawling as the CLI does), concurrency {plan.concurrency}"]
    rows = [
        [
            f"{case['latency']} s", f"{case['requests']:,}", f"{case['elapsed']:.1f} s", f"{case['achieved_rps']:,.0f}",
            f"{case['steady_rps'] or 0:,.0f}", f"{case['bound_rps']:,.0f}", f"{case['achieved_over_bound']:.1%}",
            f"{case['mean_in_flight'] or 0:.1f}", f"{case['latency_p50_ms'] or 0:.1f}",
            f"{case['ceiling_rps'] or 0:,.0f}", f">= {case['target']:.0%} {_verdict(case['met'])}",
        ]
        for case in cases
    ]  # fmt: skip
    headers = ["latency", "requests", "elapsed", "req/s", "steady req/s", "bound", "req/s / bound", "in flight",
               "p50 ms", "ceiling req/s", "target"]  # fmt: skip
    lines += _table(headers, rows)
    lines.append("   req/s = requests / elapsed (ramp-up and tail included); steady = middle 80% of completions;")
    lines.append(
        "   bound = concurrency / mean latency; in flight = mean requests in flight (Little's law); p50 as the"
    )
    lines.append(
        "   client saw it; ceiling = benchmarks/ceiling.py, same server and concurrency (the stack's own limit)"
    )
    return lines


def _render_ratelimit(data: dict[str, Any]) -> list[str]:
    return [
        f"3. Rate limit: --rate {data['rate']:g} --burst {data['burst']}",
        f"   simulator in the same process: {data['requests']:,} requests in {data['elapsed']:.2f} s = "
        f"{data['achieved_rps']:.1f} req/s ({data['deviation']:+.2%}; server-side {data['server_rps']:.1f} req/s)  "
        f"target within {TARGETS['rate_accuracy']:.0%}  {_verdict(data['met_rate'])}",
        f"   busiest 1 s window there: {data['max_in_1s_window']} arrivals, {data['sent_max_in_1s_window']} sent "
        "(the shared interpreter lock bunches arrivals)",
        f"   simulator in its own process: {data['apart_achieved_rps'] or 0:.1f} req/s; busiest 1 s window "
        f"{data['apart_server_max_in_1s_window']} arrivals at the server, {data['apart_sent_max_in_1s_window']} sent "
        f"(limit rate + burst = {data['window_limit']:g})  {_verdict(data['met_window'])}",
    ]


def _render_profile(data: dict[str, Any]) -> list[str]:
    libraries = ", ".join(f"{name} {us:.0f}" for name, us in data["by_library_us_per_request"].items() if us >= 0.5)
    lines = [
        f"4. Per-request CPU of `snapcrawl crawl` ({data['requests']:,} requests as in 1.; pyinstrument shares "
        "scaled to the unprofiled CPU time)",
        f"   client CPU {data['client_cpu_us_per_request']:.0f} µs/request: {libraries}",
        f"   snapcrawl's own code: {data['own_us_per_request']:.1f} µs/request (Python self time alone "
        f"{data['own_python_self_us_per_request']:.1f})  target < {data['target_us']:.0f} µs  "
        f"{_verdict(data['met'])}",
    ]
    if "cpu_above_ceiling_us_per_request" in data:
        lines.append(
            f"   snapcrawl CLI minus ceiling, client CPU: {data['cpu_above_ceiling_us_per_request']:+.0f} µs/request "
            "(from 1.)"
        )
    lines.append("   top snapcrawl functions (own time incl. stdlib/C helpers they call, µs/request):")
    lines += [
        f"     {item['us_per_request_scaled']:5.1f}  {item['function']}" for item in data["snapcrawl_functions"][:10]
    ]
    lines.append("   top functions of any library (same accounting):")
    lines += [
        f"     {item['us_per_request_scaled']:5.1f}  {item['library']:9} {item['function']}"
        for item in data["top_owners"][:10]
    ]
    return lines


def _render_memory(cases: list[dict[str, Any]]) -> list[str]:
    parts = [f"{case['volumes']:,} volumes {case['peak_rss_mb']:.0f} MB" for case in cases]
    ok = all(case["met"] for case in cases)
    return [
        "   peak RSS of `snapcrawl crawl --out FILE`: "
        + ", ".join(parts)
        + f"  (target < {TARGETS['rss_mb']:.0f} MB, flat)  {_verdict(ok)}"
    ]


def render(results: dict[str, Any], plan: Plan) -> str:
    """The human-readable report."""
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines = [
        f"snapcrawl benchmarks ({results['mode']}), {results['started']}, commit {machine['commit']}"
        + (" + local changes" if machine["local_changes"] else ""),
        f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs"
        + (f" ({machine['hypervisor']} VM)" if machine["hypervisor"] else "")
        + f", {machine['memory_gb']:g} GB, Linux {machine['kernel']}, Python {machine['python']}",
        f"libraries: {versions}",
        f"simulator subprocess on CPU {machine['server_cpus']}, each client in its own subprocess on CPU "
        f"{machine['client_cpus']}",
        "",
    ]
    if "throughput" in results:
        lines += [*_render_throughput(results["throughput"], plan), ""]
    if "latency" in results:
        lines += [*_render_latency(results["latency"], plan), ""]
    if "ratelimit" in results:
        lines += [*_render_ratelimit(results["ratelimit"]), ""]
    if "profile" in results:
        lines += _render_profile(results["profile"])
    if "memory" in results:
        if "profile" not in results:
            lines.append("4. Memory")
        lines += _render_memory(results["memory"])
    checks = results["checks"]
    failed = [check for check in checks if not check["ok"]]
    lines += [
        "",
        f"checks: {len(checks) - len(failed)}/{len(checks)} passed "
        "(every output holds each snapshot exactly once, every run completed)",
    ]
    lines += [f"   FAILED: {check['name']}: {check['detail']}" for check in failed]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="snapcrawl-bench-") as name:
        yield Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected measurements, print the table, write the JSON; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmark snapcrawl.")
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds (about a minute)")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these: {', '.join(NAMES)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", metavar="PATH")
    args = parser.parse_args(argv)
    selected = [name for name in NAMES if name in (args.only or NAMES)]
    if missing := missing_modules(selected):
        needing = [name for name in selected if set(NEEDS.get(name, ())) & set(missing)]
        print(
            f"python -m benchmarks: the {', '.join(needing)} measurement needs {', '.join(missing)}, from the "
            "'benchmarks' extra: python -m pip install '.[benchmarks]' (or leave it out with --only)",
            file=sys.stderr,
        )
        return 2
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    if len(ALL_CPUS) >= 2:
        os.sched_setaffinity(0, SERVER_CPUS)  # keep the client's CPU for the client
    else:
        _log("fewer than 2 CPUs: server and clients share a CPU, numbers are not comparable")
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "plan": dataclasses.asdict(plan),
        "machine": machine_info(),
    }
    started = time.perf_counter()
    with _workdir() as workdir, contextlib.ExitStack() as stack:
        bench = Bench(plan, workdir, stack)
        try:
            for name in selected:
                _log(f"--- {name}")
                MEASUREMENTS[name](bench)
        finally:
            results.update(bench.results)
            results["checks"] = bench.checks
            results["seconds"] = time.perf_counter() - started
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(render(results, plan))
    print(f"\n({results['seconds']:.0f} s; JSON: {args.json})")
    return 0 if all(check["ok"] for check in bench.checks) else 1
