"""3. Rate-limit accuracy: snapcrawl at ``rate``/``burst``, its achieved rate and the busiest one-second window.

Measured twice: with the simulator in the client's process (:mod:`benchmarks.clients.ratelimit`; arrivals timestamped
where the quota would be enforced, but the shared interpreter lock bunches them), and with the simulator in its
own process, as a real server would see the requests (its counters read over loopback).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from typing import Any

from snapcrawl.simulator import STATS_PATH

from ..helpers.harness import ALL_CPUS, run_pinned, volumes_for_requests
from ._bench import TARGETS, Bench, Plan, log, verdict
from ._clients import drive_run

__all__ = ["measure", "render"]


def _server_stats(url: str) -> dict[str, Any]:
    """The simulator's own counters (``snapcrawl.simulator.STATS_PATH``), read over loopback."""
    with urllib.request.urlopen(url + STATS_PATH, timeout=10) as response:  # noqa: S310 - our own loopback URL
        data: dict[str, Any] = json.loads(response.read())
    return data


def measure(bench: Bench) -> None:
    """About ``rate_seconds`` of crawling at ``plan.rate``, in process and apart."""
    plan = bench.plan
    volumes = volumes_for_requests(int(plan.rate * plan.rate_seconds), plan.page_size, plan.seed)
    out, report = bench.workdir / "ratelimit.jsonl", bench.workdir / "ratelimit.report.json"
    cmd = [
        sys.executable, "-m", "benchmarks.clients.ratelimit", "--volumes", str(volumes), "--seed", str(plan.seed),
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
    apart, _ = drive_run(
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
    log(
        f"ratelimit {achieved:.1f} req/s over {data['elapsed']:.1f} s ({result['deviation']:+.2%}); "
        f"busiest 1 s window {data['max_in_1s_window']} (limit {ceiling:g})"
    )
    bench.results["ratelimit"] = result


def render(data: dict[str, Any], plan: Plan) -> list[str]:
    """Achieved rate and busiest window, in process and apart."""
    return [
        f"3. Rate limit: --rate {data['rate']:g} --burst {data['burst']}",
        f"   simulator in the same process: {data['requests']:,} requests in {data['elapsed']:.2f} s = "
        f"{data['achieved_rps']:.1f} req/s ({data['deviation']:+.2%}; server-side {data['server_rps']:.1f} req/s)  "
        f"target within {TARGETS['rate_accuracy']:.0%}  {verdict(data['met_rate'])}",
        f"   busiest 1 s window there: {data['max_in_1s_window']} arrivals, {data['sent_max_in_1s_window']} sent "
        "(the shared interpreter lock bunches arrivals)",
        f"   simulator in its own process: {data['apart_achieved_rps'] or 0:.1f} req/s; busiest 1 s window "
        f"{data['apart_server_max_in_1s_window']} arrivals at the server, {data['apart_sent_max_in_1s_window']} sent "
        f"(limit rate + burst = {data['window_limit']:g})  {verdict(data['met_window'])}",
    ]
