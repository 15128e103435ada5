"""1. CPU-bound throughput: snapcrawl's CLI against the naive client and the ceiling, interleaved rounds.

No simulated latency, so the client's CPU is the limit. Every client runs once per round, the order rotating
from round to round; the figures are medians over rounds, and the ratios medians of each round's ratio, so a
busy machine slows both sides of a ratio alike. A run disturbed by other load on the client's CPU is repeated.
With ``--baseline DIR`` the CLI of another checkout runs in the same rounds (an old core against the new one).
"""

from __future__ import annotations

import statistics
from typing import Any, Final

from ..helpers.harness import expected_requests
from ._bench import TARGETS, Bench, Plan, log, verdict
from ._clients import BASELINE, CLIENTS, client_run, interference
from ._report import table

__all__ = ["measure", "render"]

_RETRIES_WHEN_DISTURBED: Final = 2
_SUMMARY_KEYS: Final = (
    "snapshots_per_s", "requests_per_s", "client_us_per_request", "server_us_per_request",
    "client_cpu_util", "server_cpu_util", "elapsed", "requests",
)  # fmt: skip
#: (numerator, denominator, key in ``median_ratio``): the ratios worth reporting, when both clients ran.
_RATIOS: Final = (
    ("snapcrawl", "ceiling", "vs_ceiling"),
    ("snapcrawl", "naive", "vs_naive"),
    ("snapcrawl-asyncio", "ceiling", "asyncio_vs_ceiling"),
    ("snapcrawl-asyncio", "naive", "asyncio_vs_naive"),
    ("snapcrawl", BASELINE, "vs_baseline"),
    (BASELINE, "ceiling", "baseline_vs_ceiling"),
    (BASELINE, "naive", "baseline_vs_naive"),
)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = [run[key] for run in runs if run.get("ok")]
    return statistics.median(values) if values else float("nan")


def _median_ratio(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], *, cpu: bool = False) -> float:
    """The median over rounds of the two clients' snapshots/s ratio (rounds where both ran cleanly); with
    ``cpu``, of their inverse client CPU per snapshot instead, which is what throughput is when the CPU is the
    limit, and which other load on a busy machine disturbs far less than the wall clock."""
    key = "cpu_per_snapshot" if cpu else "snapshots_per_s"
    pairs = [
        (b[key] / a[key]) if cpu else (a[key] / b[key])
        for a, b in zip(mine, theirs, strict=True)
        if a.get("ok") and b.get("ok")
    ]
    return statistics.median(pairs) if pairs else float("nan")


def _run_disturbed_again(bench: Bench, client: str, label: str) -> dict[str, Any]:
    """One run of ``client``, repeated (up to twice) while other load on the client's CPU spoils it."""
    sim = bench.plain_simulator()
    for attempt in range(1 + _RETRIES_WHEN_DISTURBED):
        run = client_run(bench, client, sim, f"throughput {label}")
        if not run.get("ok") or not interference(run) or attempt == _RETRIES_WHEN_DISTURBED:
            break
        log(f"throughput {label} {client}: disturbed by other load ({interference(run).strip()}), again")
    run["attempts"] = attempt + 1
    return run


def measure(bench: Bench) -> None:
    """Interleaved rounds of every client on the shared fault-free simulator; medians and ratios."""
    plan = bench.plan
    dataset = bench.plain_simulator().dataset()
    clients = (*CLIENTS, BASELINE) if bench.baseline is not None else CLIENTS
    # Every client here ends a volume on an empty or short page (the baseline's core may not: it is not checked).
    expected = expected_requests(dataset, plan.page_size)
    runs: dict[str, list[dict[str, Any]]] = {client: [] for client in clients}
    for number in range(plan.rounds + 1):
        label = "warm-up" if number == 0 else f"round {number}"
        shift = number % len(clients)
        for client in clients[shift:] + clients[:shift]:
            run = _run_disturbed_again(bench, client, label)
            if run.get("ok"):
                log(
                    f"throughput {label:8} {client:18} {run['snapshots_per_s']:9,.0f} snapshots/s "
                    f"{run['requests_per_s']:7,.0f} req/s  client {run['client_us_per_request']:4.0f} µs/req "
                    f"server {run['server_us_per_request']:4.0f} µs/req" + interference(run)
                )
                if client != BASELINE and run["requests"] != expected:
                    bench.check(
                        f"throughput {client} request count",
                        False,
                        f"{run['requests']} requests, {expected} expected for a fault-free crawl",
                    )
            if number:
                runs[client].append(run)
    for run in (run for group in runs.values() for run in group if run.get("ok")):
        run["cpu_per_snapshot"] = run["cpu"] / max(run["snapshots"], 1)
    pairs = [(mine, other, key) for mine, other, key in _RATIOS if mine in runs and other in runs]
    ratios = {key: _median_ratio(runs[mine], runs[other]) for mine, other, key in pairs}
    cpu_ratios = {key: _median_ratio(runs[mine], runs[other], cpu=True) for mine, other, key in pairs}
    bench.results["throughput"] = {
        "volumes": plan.volumes,
        "snapshots": dataset.total,
        "expected_requests": expected,
        "baseline": str(bench.baseline) if bench.baseline is not None else None,
        "rounds": plan.rounds,
        "median": {client: {key: _median(runs[client], key) for key in _SUMMARY_KEYS} for client in clients},
        "median_ratio": ratios,
        "median_cpu_ratio": cpu_ratios,
        "runs_retried_for_other_load": sum(run.get("attempts", 1) > 1 for group in runs.values() for run in group),
        "runs_still_disturbed": sum(
            bool(run.get("ok") and interference(run)) for group in runs.values() for run in group
        ),
        "targets": {
            name: {"target": TARGETS[name], "met": ratios[name] >= TARGETS[name]} for name in ("vs_ceiling", "vs_naive")
        },
        "runs": runs,
    }


def render(data: dict[str, Any], plan: Plan) -> list[str]:
    """The throughput table and its ratios."""
    lines = [
        f"1. Throughput: {data['volumes']:,} volumes, {data['snapshots']:,} snapshots, no latency, page size "
        f"{plan.page_size}, concurrency {plan.concurrency}",
        f"   median of {data['rounds']} interleaved rounds after a warm-up round; CPU per request measured after "
        "imports; server CPU from /proc",
    ]
    rows = []
    for client, m in data["median"].items():
        rows.append([
            client, f"{m['snapshots_per_s']:,.0f}", f"{m['requests_per_s']:,.0f}", f"{m['elapsed']:.2f} s",
            f"{m['client_us_per_request']:.0f}", f"{m['server_us_per_request']:.0f}",
            f"{m['client_cpu_util']:.0%}", f"{m['server_cpu_util']:.0%}",
        ])  # fmt: skip
    headers = ["client", "snapshots/s", "requests/s", "elapsed", "client µs/req", "server µs/req", "client CPU",
               "server CPU"]  # fmt: skip
    lines += table(headers, rows)
    if data.get("runs_retried_for_other_load") or data.get("runs_still_disturbed"):
        lines.append(
            f"   other load on the client's CPU: {data['runs_retried_for_other_load']} runs repeated, "
            f"{data['runs_still_disturbed']} kept although disturbed"
        )
    ratios, cpu = data["median_ratio"], data.get("median_cpu_ratio", {})
    lines.append("   ratios: median of each round's snapshots/s ratio [and of its CPU-per-snapshot ratio, inverted]")
    for other in ("ceiling", "naive"):
        key, target = f"vs_{other}", data["targets"][f"vs_{other}"]
        lines.append(
            f"   {'snapcrawl / ' + other:40} {ratios[key]:5.2f}x [{cpu.get(key, float('nan')):5.2f}x]  "
            f"(target >= {target['target']:.2f}x)  {verdict(target['met'])}"
        )
    for mine, other, key in _RATIOS[2:]:
        if key in ratios:
            lines.append(f"   {mine + ' / ' + other:40} {ratios[key]:5.2f}x [{cpu.get(key, float('nan')):5.2f}x]")
    return lines
