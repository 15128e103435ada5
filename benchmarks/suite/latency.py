"""2. Latency hiding: requests/s with simulated latency, against the bound concurrency / mean latency.

snapcrawl runs as a library (:mod:`benchmarks.clients.drive`, crawling as the CLI does) with request timestamps, for the
steady-state rate and the mean number of requests in flight; the ceiling client at the same concurrency is the
reference for what the stack can do against the same server.
"""

from __future__ import annotations

from typing import Any, Final

from ..helpers.harness import volumes_for_requests
from ._bench import TARGETS, Bench, Plan, log, verdict
from ._clients import client_run, drive_run
from ._report import table

__all__ = ["measure", "render"]

#: ``--latency`` of the simulator (uniform between two bounds, or fixed), and its mean in seconds.
LATENCIES: Final = (("0.18:0.22", 0.2), ("0.05", 0.05))


def measure(bench: Bench) -> None:
    """One crawl of about ``latency_seconds`` per latency.

    The simulator's data is generated on first use, which would stall it; a warm-up crawl (the ceiling client,
    at 4x the concurrency) fills its caches first.
    """
    plan = bench.plan
    cases = []
    for spec, mean in LATENCIES:
        bound = plan.concurrency / mean
        volumes = volumes_for_requests(int(bound * plan.latency_seconds), plan.page_size, plan.seed)
        timeout = 60 + plan.latency_seconds * 4
        sim = bench.simulator(volumes, ("--latency", spec))
        client_run(bench, "ceiling", sim, f"latency {spec} warm-up", concurrency=plan.concurrency * 4, timeout=timeout)
        report, server_cpu = drive_run(bench, sim, f"latency {spec} snapcrawl", timeout=timeout)
        reference = client_run(bench, "ceiling", sim, f"latency {spec}", timeout=timeout)
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
        log(
            f"latency {spec:9} {achieved:6,.0f} req/s of {bound:,.0f} ({achieved / bound:.1%}); "
            f"steady {case['steady_rps'] or 0:,.0f} req/s, {case['mean_in_flight'] or 0:.1f} in flight; "
            f"ceiling client {case['ceiling_rps'] or 0:,.0f} req/s"
        )
        cases.append(case)
    bench.results["latency"] = cases


def render(cases: list[dict[str, Any]], plan: Plan) -> list[str]:
    """One row per latency."""
    lines = [f"2. Latency hiding: snapcrawl (library, crawling as the CLI does), concurrency {plan.concurrency}"]
    rows = [
        [
            f"{case['latency']} s", f"{case['requests']:,}", f"{case['elapsed']:.1f} s", f"{case['achieved_rps']:,.0f}",
            f"{case['steady_rps'] or 0:,.0f}", f"{case['bound_rps']:,.0f}", f"{case['achieved_over_bound']:.1%}",
            f"{case['mean_in_flight'] or 0:.1f}", f"{case['latency_p50_ms'] or 0:.1f}",
            f"{case['ceiling_rps'] or 0:,.0f}", f">= {case['target']:.0%} {verdict(case['met'])}",
        ]
        for case in cases
    ]  # fmt: skip
    headers = ["latency", "requests", "elapsed", "req/s", "steady req/s", "bound", "req/s / bound", "in flight",
               "p50 ms", "ceiling req/s", "target"]  # fmt: skip
    lines += table(headers, rows)
    lines.append("   req/s = requests / elapsed (ramp-up and tail included); steady = middle 80% of completions;")
    lines.append(
        "   bound = concurrency / mean latency; in flight = mean requests in flight (Little's law); p50 as the"
    )
    lines.append(
        "   client saw it; ceiling = benchmarks/clients/ceiling.py, same server and concurrency (the stack's own limit)"
    )
    return lines
