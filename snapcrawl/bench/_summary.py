"""The human summary of a report, as ``snapcrawl bench`` prints it on stderr."""

from __future__ import annotations

from ._report import BenchReport, Latency

__all__ = ["summary"]

_COLUMNS = ("p50", "p90", "p99", "p99.9", "max", "mean")


def _row(label: str, latency: Latency) -> str:
    values = (latency.p50, latency.p90, latency.p99, latency.p99_9, latency.max, latency.mean)
    return f"  {label:<22}" + "".join(f"{value:>10.2f}" for value in values)


def _share(count: int, total: int) -> str:
    return f"{count} ({count / total:.1%})" if total else str(count)


def summary(report: BenchReport) -> str:
    """A few lines: the load, the answers, the three latency distributions, find-max steps, warnings, thresholds."""
    if report.mode == "open":
        load = f"open loop at {report.target_rps:g} req/s, up to {report.max_in_flight} in flight"
    elif report.mode == "closed":
        load = f"closed loop, {report.concurrency} concurrent"
    else:
        load = f"find-max, figures of the highest sustained step ({report.target_rps:g} req/s)"
    status = ", ".join(f"{code}: {n}" for code, n in report.status.items()) or "none"
    lines = [
        f"snapcrawl bench: {load}, against {report.endpoint}",
        f"  {report.requests} requests in {report.duration_s:.2f} s = {report.achieved_rps:.1f} req/s; "
        f"status {status}; throttled {_share(report.throttled, report.requests)}, "
        f"failed {_share(report.failed, report.requests)}",
    ]
    lines += [f"  error {kind!r}: {n}" for kind, n in report.errors.items()]
    lines.append(f"  {'latency (ms)':<22}" + "".join(f"{name:>10}" for name in _COLUMNS))
    lines.append(_row("from intended send", report.latency_ms))
    lines.append(_row("from actual send", report.latency_uncorrected_ms))
    lines.append(_row("scheduling lag", report.scheduling_lag_ms))
    if report.steps is not None:
        lines.append("  find-max steps (req/s target -> achieved, throttled+failed, p99 ms, verdict):")
        lines += [
            f"    {step.target_rps:>9.1f} -> {step.achieved_rps:>8.1f}  {step.throttled + step.failed:>6}/"
            f"{step.requests:<6} {step.p99_ms:>9.1f}  {'pass' if step.passed else 'FAIL'}: {step.reason}"
            for step in report.steps
        ]
        precision = report.search_precision
        bound = "" if precision is None else f" (the limit is at most {precision:.1%} above)"
        lines.append(f"  max sustainable: {report.max_sustainable_rps:.1f} req/s{bound}")
    lines += [f"  warning: {warning}" for warning in report.warnings]
    lines += [
        f"  threshold {result.condition!r}: {result.value:.4g} -> {'BREACHED' if result.breached else 'ok'}"
        for result in report.thresholds
    ]
    return "\n".join(lines)
