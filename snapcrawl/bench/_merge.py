"""``snapcrawl bench report``: one report from several saved runs (workers, machines, or runs one after another).

Histograms are added, so merged percentiles are exactly those of one histogram holding every run's samples.
Timelines line up by each run's wall-clock start (to the nearest second) and add second by second: counts, the
per-second histograms, and the target rates (so parallel workers add up, while runs one after another follow
each other). Throughput is counted over the whole span, from the earliest start to the last answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .._exceptions import ConfigError
from .._units import DEFAULT_PERCENTILES
from ._hist import Histogram, figures
from ._report import BenchReport, SavedHistogram, Second, decode_report
from ._run import LAG_WARNING_PREFIX, lag_warning
from ._thresholds import Threshold

__all__ = ["load_reports", "merge", "rejudge"]


def load_reports(paths: Sequence[str]) -> list[BenchReport]:
    """Read saved runs (``--save`` or ``--json`` files); a missing or foreign file is a :class:`ConfigError`."""
    reports = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        reports.append(decode_report(data, source=path))
    return reports


def _second(index: int, rows: Sequence[Second], source: str) -> Second:
    """Rows of several runs that fell in the same second, as one."""
    intended = Histogram.merged(Histogram.load(SavedHistogram(hdr=row.hdr, sum_us=0), source=source) for row in rows)
    actual = Histogram.merged(
        Histogram.load(SavedHistogram(hdr=row.hdr_actual, sum_us=0), source=source) for row in rows
    )
    status: Counter[str] = Counter()
    for row in rows:
        status.update(row.status)
    targets = [row.target_rps for row in rows if row.target_rps is not None]
    at, actual_at = intended.values_at((50.0, 90.0, 99.0, 100.0)), actual.values_at((50.0, 99.0))
    return Second(
        second=index,
        sent=sum(row.sent for row in rows),
        completed=sum(row.completed for row in rows),
        status=dict(sorted(status.items(), key=lambda item: int(item[0]))),
        errors=sum(row.errors for row in rows),
        p50_ms=at[50.0],
        p90_ms=at[90.0],
        p99_ms=at[99.0],
        max_ms=at[100.0],
        due=sum(row.due for row in rows),
        target_rps=sum(targets) if targets else None,
        actual_p50_ms=actual_at[50.0],
        actual_p99_ms=actual_at[99.0],
        hdr=intended.save().hdr if intended.count else "",
        hdr_actual=actual.save().hdr if actual.count else "",
    )


def merge(
    reports: Sequence[BenchReport], *, percentiles: Sequence[float] = DEFAULT_PERCENTILES, source: str = "report"
) -> BenchReport:
    """One report of every run in ``reports``, its thresholds left for :func:`rejudge`."""
    if not reports:
        raise ConfigError("bench report needs at least one saved run")
    modes = {report.mode for report in reports}
    if "find-max" in modes:
        raise ConfigError("a find-max report holds only its best step: it cannot be merged (re-run it instead)")
    if len(modes) > 1:
        raise ConfigError(f"cannot merge an open-loop run with a closed-loop one ({', '.join(sorted(modes))})")
    histograms = [report.histograms for report in reports if report.histograms is not None]
    if len(histograms) < len(reports):
        raise ConfigError(f"{source}: a run without saved histograms cannot be merged")
    corrected = Histogram.merged(Histogram.load(saved.corrected, source=source) for saved in histograms)
    uncorrected = Histogram.merged(Histogram.load(saved.uncorrected, source=source) for saved in histograms)
    lag = Histogram.merged(Histogram.load(saved.lag, source=source) for saved in histograms)

    start = min(report.started_at for report in reports)
    end = max(report.started_at + report.duration_s for report in reports)
    span = end - start
    by_second: dict[int, list[Second]] = {}
    for report in reports:
        offset = round(report.started_at - start)
        for row in report.timeline:
            by_second.setdefault(offset + row.second, []).append(row)
    seconds = max(by_second, default=-1) + 1
    timeline = [_second(index, by_second.get(index, []), source) for index in range(seconds)]

    status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for report in reports:
        status.update(report.status)
        errors.update(report.errors)
    requests = sum(report.requests for report in reports)
    targets = [(report.target_rps, report.duration_s) for report in reports if report.target_rps is not None]
    first = reports[0]
    # Each run's own lag warning gives way to one of the merged lag.
    warnings = [
        warning
        for warning in dict.fromkeys(warning for report in reports for warning in report.warnings)
        if not warning.startswith(LAG_WARNING_PREFIX)
    ]
    measured = figures(corrected, uncorrected, lag, percentiles)
    if (warning := lag_warning(measured["scheduling_lag_ms"])) is not None:
        warnings.append(warning)
    return BenchReport(
        mode=first.mode,
        endpoint=", ".join(dict.fromkeys(report.endpoint for report in reports)),
        requests=requests,
        duration_s=span,
        # The time-averaged offered rate: parallel workers add up, runs one after another average out.
        target_rps=sum(rate * duration for rate, duration in targets) / span if targets and span > 0 else None,
        achieved_rps=requests / span if span > 0 else 0.0,
        concurrency=sum(report.concurrency or 0 for report in reports) or None,
        max_in_flight=sum(report.max_in_flight for report in reports),
        status=dict(sorted(status.items(), key=lambda item: int(item[0]))),
        errors=dict(errors.most_common()),
        throttled=sum(report.throttled for report in reports),
        failed=sum(report.failed for report in reports),
        held_back=sum(report.held_back for report in reports),
        timeline=timeline,
        warnings=warnings,
        stages=_stages(reports),
        started_at=start,
        workers=sum(report.workers for report in reports),
        settings=first.settings,
        **measured,
    )


def _stages(reports: Sequence[BenchReport]) -> list[tuple[float, float]]:
    """Workers' shares of one ramp, started together, add up to the ramp; anything else keeps no stages."""
    shapes = {tuple(duration for duration, _ in report.stages) for report in reports}
    starts = [report.started_at for report in reports]
    if len(shapes) != 1 or not reports[0].stages or max(starts) - min(starts) > 1:
        return []
    return [
        (duration, sum(report.stages[i][1] for report in reports)) for i, (duration, _) in enumerate(reports[0].stages)
    ]


def rejudge(report: BenchReport, fail_if: Sequence[str]) -> BenchReport:
    """``report`` with its ``--fail-if`` conditions checked afresh (those given now, or else those it had)."""
    conditions = list(fail_if) or [result.condition for result in report.thresholds]
    results = [Threshold.parse(condition).check(report) for condition in conditions]
    return msgspec.structs.replace(report, thresholds=results)
