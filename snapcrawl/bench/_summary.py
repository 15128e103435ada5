"""The human summary of a report, as ``snapcrawl bench`` prints it on stderr."""

from __future__ import annotations

from .._units import format_duration
from ._report import BenchReport, Latency

__all__ = ["summary"]


def _columns(report: BenchReport) -> list[str]:
    return (
        [*report.latency_ms.percentiles, "max", "mean"]
        if report.latency_ms.percentiles
        else [
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
        ]
    )


def _row(label: str, latency: Latency, columns: list[str]) -> str:
    fixed = {"p50": latency.p50, "p90": latency.p90, "p99": latency.p99, "p99.9": latency.p99_9}
    values = {**fixed, **latency.percentiles, "max": latency.max, "mean": latency.mean}
    return f"  {label:<22}" + "".join(f"{values.get(name, 0.0):>10.2f}" for name in columns)


def _share(count: int, total: int) -> str:
    return f"{count} ({count / total:.1%})" if total else str(count)


def _load(report: BenchReport) -> str:
    workers = f", {report.workers} workers" if report.workers > 1 else ""
    if report.mode == "open" and report.stages:
        ramp = ", ".join(f"{target:g}/s over {format_duration(duration)}" for duration, target in report.stages)
        return f"open loop ramping to {ramp}, up to {report.max_in_flight} in flight{workers}"
    if report.mode == "open":
        return f"open loop at {report.target_rps or 0:g} req/s, up to {report.max_in_flight} in flight{workers}"
    if report.mode == "closed":
        return f"closed loop, {report.concurrency} concurrent{workers}"
    return f"find-max, figures of the highest sustained step ({report.target_rps or 0:g} req/s)"


def summary(report: BenchReport) -> str:
    """A few lines: the load, the answers, the three latency distributions, find-max steps, warnings, thresholds."""
    status = ", ".join(f"{code}: {n}" for code, n in report.status.items()) or "none"
    columns = _columns(report)
    lines = [
        f"snapcrawl bench: {_load(report)}, against {report.endpoint}",
        f"  {report.requests} requests in {report.duration_s:.2f} s = {report.achieved_rps:.1f} req/s; "
        f"status {status}; throttled {_share(report.throttled, report.requests)}, "
        f"failed {_share(report.failed, report.requests)}",
    ]
    lines += [f"  error {kind!r}: {n}" for kind, n in report.errors.items()]
    lines.append(f"  {'latency (ms)':<22}" + "".join(f"{name:>10}" for name in columns))
    lines.append(_row("from intended send", report.latency_ms, columns))
    lines.append(_row("from actual send", report.latency_uncorrected_ms, columns))
    lines.append(_row("scheduling lag", report.scheduling_lag_ms, columns))
    if report.steps is not None:
        lines.append("  find-max steps (req/s target -> achieved, throttled+failed, p99 ms, verdict):")
        lines += [
            f"    {step.target_rps:>9.1f} -> {step.achieved_rps:>8.1f}  {step.throttled + step.failed:>6}/"
            f"{step.requests:<6} {step.p99_ms:>9.1f}  {'pass' if step.passed else 'FAIL'}: {step.reason}"
            for step in report.steps
        ]
        precision = report.search_precision
        bound = "" if precision is None else f" (the limit is at most {precision:.1%} above)"
        slo = "".join(f"; there {result.condition!r} measured {result.shown}" for result in report.slo)
        lines.append(f"  max sustainable: {report.max_sustainable_rps or 0:.1f} req/s{bound}{slo}")
    lines += [f"  warning: {warning}" for warning in report.warnings]
    lines += [
        f"  threshold {result.condition!r}: {result.shown or f'{result.value:.4g}'} -> "
        f"{'BREACHED' if result.breached else 'ok'}"
        for result in report.thresholds
    ]
    return "\n".join(lines)
