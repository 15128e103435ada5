"""5. Memory: peak RSS of ``snapcrawl crawl`` writing a file, for a small and a large number of volumes.

It should stay flat: pages stream to the file, and only the set of volume ids already seen grows (so that a
duplicate id is crawled once).
"""

from __future__ import annotations

import sys
from typing import Any

from ..helpers.harness import CLIENT_CPUS, run_pinned
from ._bench import TARGETS, Bench, Plan, log, verdict

__all__ = ["measure", "render"]


def measure(bench: Bench) -> None:
    """One crawl per size in ``plan.memory_volumes``, its peak RSS sampled from ``/proc`` every 10 ms."""
    plan = bench.plan
    cases = []
    for volumes in plan.memory_volumes:
        shared = volumes == plan.volumes
        sim = bench.plain_simulator() if shared else bench.simulator(volumes)
        out = bench.workdir / f"memory-{volumes}.jsonl"
        cmd = [
            sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes", str(sim.volume_file),
            "--out", str(out), "--page-size", str(plan.page_size), "--concurrency", str(plan.concurrency),
            "--no-progress",
        ]  # fmt: skip
        proc = run_pinned(cmd, cpus=CLIENT_CPUS, timeout=120 + volumes / 150, logs=bench.workdir / f"memory-{volumes}")
        lines, _ = bench.verify(f"memory {volumes:,} volumes", out, sim.dataset().total)
        if not proc.ok:
            bench.check(f"memory {volumes} ran", False, f"exit {proc.returncode}: {proc.stderr_tail[-800:]}")
        cases.append(
            {
                "volumes": volumes,
                "snapshots": lines,
                "peak_rss_mb": proc.peak_rss_mb,
                "wall": proc.wall,
                "simulator_start_s": sim.start_seconds,
                "met": proc.ok and proc.peak_rss_mb < TARGETS["rss_mb"],
            }
        )
        log(f"memory {volumes:,} volumes: peak RSS {proc.peak_rss_mb:.1f} MB ({proc.wall:.1f} s)")
        if not shared:
            sim.stop()
    bench.results["memory"] = cases


def render(cases: list[dict[str, Any]], plan: Plan) -> list[str]:
    """Peak RSS per size against the target."""
    parts = [f"{case['volumes']:,} volumes {case['peak_rss_mb']:.0f} MB" for case in cases]
    ok = all(case["met"] for case in cases)
    return [
        f"5. Memory: peak RSS of `snapcrawl crawl --out FILE`, page size {plan.page_size}: "
        + ", ".join(parts)
        + f"  (target < {TARGETS['rss_mb']:.0f} MB, flat)  {verdict(ok)}"
    ]
