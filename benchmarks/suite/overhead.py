"""4. Per-request CPU of ``snapcrawl crawl`` and where it goes: a pyinstrument profile of the throughput run.

The profiled run's shares (by library, by snapcrawl function; see :mod:`benchmarks.suite._profile`) are scaled to the
unprofiled CPU time per request (the median of 1., or a run of its own), since pyinstrument's own overhead
inflates every call. Needs pyinstrument, from the ``benchmarks`` extra.
"""

from __future__ import annotations

from typing import Any

from ._bench import RESULTS, TARGETS, Bench, Plan, log, verdict
from ._clients import client_run

__all__ = ["measure", "render"]


def measure(bench: Bench) -> None:
    """One profiled ``snapcrawl crawl`` of the shared simulator; writes ``profile.txt`` and ``profile.html``."""
    sim = bench.plain_simulator()
    throughput = bench.results.get("throughput", {}).get("median", {})
    if throughput:
        cpu_us = throughput["snapcrawl"]["client_us_per_request"]
    else:
        client_run(bench, "snapcrawl", sim, "profile warm-up")  # fills the simulator's caches
        plain = client_run(bench, "snapcrawl", sim, "profile unprofiled")
        if not plain.get("ok"):
            return
        cpu_us = plain["client_us_per_request"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    timeout = 120 + sim.dataset().total / 500
    profiled = client_run(bench, "snapcrawl", sim, "profile", timed=("--profile", str(RESULTS)), timeout=timeout)
    if not profiled.get("ok") or "profile" not in profiled:
        bench.check("profile recorded", False, "the profiled run failed or wrote no profile")
        return
    prof = profiled["profile"]
    scale = cpu_us / profiled["client_us_per_request"]
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
    log(f"profile: {cpu_us:.0f} µs/request client CPU, {own:.1f} µs of it in snapcrawl's own code")
    bench.results["profile"] = result


def render(data: dict[str, Any], plan: Plan) -> list[str]:
    """CPU per request by library, snapcrawl's own share, and the top functions."""
    libraries = ", ".join(f"{name} {us:.0f}" for name, us in data["by_library_us_per_request"].items() if us >= 0.5)
    lines = [
        f"4. Per-request CPU of `snapcrawl crawl` ({data['requests']:,} requests as in 1.; pyinstrument shares "
        "scaled to the unprofiled CPU time)",
        f"   client CPU {data['client_cpu_us_per_request']:.0f} µs/request: {libraries}",
        f"   snapcrawl's own code: {data['own_us_per_request']:.1f} µs/request (Python self time alone "
        f"{data['own_python_self_us_per_request']:.1f})  target < {data['target_us']:.0f} µs  "
        f"{verdict(data['met'])}",
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
