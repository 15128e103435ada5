"""How much load ``snapcrawl bench`` itself can generate: the open-loop rates one worker (and N workers) hold.

    python -m benchmarks.studies.bench_capacity [--rates 2000,4000,5000,6000] [--seconds 10] [--workers 1,2]
        [--json FILE]

``snapcrawl simulate`` runs in its own process pinned to one core (:data:`SERVER_CPUS`); ``snapcrawl bench
--rate R`` runs pinned to the other (:data:`CLIENT_CPUS`) with one worker, or over every core with several (on a
2-core machine they then share the server's core: the figure is what the machine allows, not what N cores
would). For each rate: the achieved rate, the scheduling lag (how late the generator sent, its own limit: the
target is p99 < 1 ms at >= 5,000 req/s), latency p99 from the intended send, the client's CPU per request, and
the time other processes took from the two cores meanwhile (``/proc/stat``), so a noisy machine shows as such.
CPU per request leaves out the start-up (measured once with a one-request run); at rates the client keeps up
with, it includes the scheduler's spinning in the last 1.5 ms before each send.
A rate "holds" when the generator sent on schedule (lag p99 < 1 ms) and answers kept up (achieved >= 98%).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..helpers.harness import ALL_CPUS, CLIENT_CPUS, SERVER_CPUS, SimulatorProcess, client_env, core_seconds, run_pinned

__all__ = ["main", "measure_rate"]

#: Enough volumes that no URL goes faster than its one-request-per-microsecond signer timestamps.
VOLUMES: Final = 400
LAG_TARGET_MS: Final = 1.0
KEEP_UP: Final = 0.98


def measure_rate(
    sim: SimulatorProcess, workdir: Path, rate: float, seconds: float, *, workers: int, startup_cpu: float = 0.0
) -> dict[str, Any]:
    """One ``snapcrawl bench --rate`` run against ``sim``; its figures. ``startup_cpu`` (the CPU seconds of a
    one-request run: interpreter, imports, set-up) is left out of the CPU per request."""
    out = workdir / f"bench-{workers}-{rate:g}.json"
    cmd = [
        sys.executable, "-m", "snapcrawl.cli", "bench", "--endpoint", sim.url, "--volumes", str(sim.volume_file),
        "--rate", f"{rate:g}", "--duration", f"{seconds:g}", "--workers", str(workers), "--json", str(out),
        "--no-progress",
    ]  # fmt: skip
    env = client_env()
    cpus = CLIENT_CPUS if workers == 1 else ALL_CPUS
    busy_before = core_seconds(ALL_CPUS)
    server_before = sim.cpu()
    result = run_pinned(cmd, cpus=cpus, timeout=seconds * 4 + 60, logs=out.with_suffix(""), env=env, report=out)
    busy_after = core_seconds(ALL_CPUS)
    report = result.report
    if not report:
        return {"rate": rate, "workers": workers, "ok": False, "error": result.stderr_tail}
    requests = report["requests"] or 1
    lag, latency = report["scheduling_lag_ms"], report["latency_ms"]
    own = result.cpu + (sim.cpu() - server_before)
    other = max(0.0, busy_after[0] - busy_before[0] - own)
    achieved = report["achieved_rps"]
    return {
        "rate": rate,
        "workers": workers,
        "ok": True,
        "achieved_rps": achieved,
        "lag_p50_ms": lag["p50"],
        "lag_p99_ms": lag["p99"],
        "lag_max_ms": lag["max"],
        "latency_p99_ms": latency["p99"],
        "client_cpu_us_per_request": max(0.0, result.cpu - startup_cpu * workers) / requests * 1e6,
        "client_cpu_s": result.cpu,
        "client_cpu_util": result.cpu / result.wall,
        "server_cpu_util": (sim.cpu() - server_before) / result.wall,
        "other_load_cores": other / result.wall,
        "holds": lag["p99"] < LAG_TARGET_MS and achieved >= KEEP_UP * rate,
        "warnings": report["warnings"],
    }


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| workers | target req/s | achieved | lag p50 ms | lag p99 ms | latency p99 ms | client CPU µs/req | "
        "other load (cores) | holds |"
    )
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        if not row["ok"]:
            lines.append(f"| {row['workers']} | {row['rate']:g} | failed: {row['error'][-60:]!r} | | | | | | |")
            continue
        lines.append(
            f"| {row['workers']} | {row['rate']:,.0f} | {row['achieved_rps']:,.0f} | {row['lag_p50_ms']:.2f} | "
            f"{row['lag_p99_ms']:.2f} | {row['latency_p99_ms']:.1f} | {row['client_cpu_us_per_request']:.0f} | "
            f"{row['other_load_cores']:.2f} | {'yes' if row['holds'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each rate with each worker count, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.studies.bench_capacity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rates", default="2000,4000,5000,6000", help="open-loop rates to try, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--workers", default="1,2", help="worker counts to try, comma-separated")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rates = [float(rate) for rate in args.rates.split(",")]
    counts = [int(count) for count in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="snapcrawl-bench-capacity-") as name:
        workdir = Path(name)
        with SimulatorProcess(volumes=VOLUMES, workdir=workdir, cpus=SERVER_CPUS) as sim:
            measure_rate(sim, workdir, 500.0, 2.0, workers=1)  # warm the simulator's pages up
            startup = measure_rate(sim, workdir, 1.0, 1.0, workers=1).get("client_cpu_s", 0.0)
            for workers in counts:
                for rate in rates:
                    row = measure_rate(sim, workdir, rate, args.seconds, workers=workers, startup_cpu=startup)
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    print(_table(rows))
    best = max((row["rate"] for row in rows if row["ok"] and row["holds"] and row["workers"] == 1), default=0)
    print(f"\none worker holds up to {best:,.0f} req/s of the rates tried (target: >= 5,000 with lag p99 < 1 ms)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
