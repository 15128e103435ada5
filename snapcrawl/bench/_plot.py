"""``--plot``: latency over time (from the intended and the actual send), rate over time (target, sent,
answered), status codes over time, and the percentile spectrum, as a PNG or an HTML page (matplotlib).
Legends sit right of their panels, clear of the data.

The spectrum is drawn as HdrHistogram plots it: the x axis is ``1 / (1 - percentile)`` on a log scale, so the
tail (99%, 99.9%, ...) gets as much room as the median.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._exceptions import ConfigError
from ._report import BenchReport
from ._summary import summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SUFFIXES", "plot", "require_matplotlib"]

SUFFIXES = (".png", ".html")
#: Where the spectrum's x axis (``1 / (1 - percentile)``) gets a label.
_TICKS: Final = {2: "50%", 10: "90%", 100: "99%", 1000: "99.9%", 10_000: "99.99%", 100_000: "99.999%"}


def require_matplotlib() -> None:
    """Raise :class:`ConfigError` naming the ``plot`` extra when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional, probed at run time
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'snapcrawl[plot]'") from None


def _outside(axes: Axes) -> None:
    """A legend right of the panel, where it cannot cover data."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small")


def _latency_panel(axes: Axes, report: BenchReport) -> None:
    seconds = [row.second + 0.5 for row in report.timeline]
    series = (
        ("p99 from intended send", [row.p99_ms for row in report.timeline], "-", "tab:red"),
        ("p50 from intended send", [row.p50_ms for row in report.timeline], "-", "tab:blue"),
        ("p99 from actual send", [row.actual_p99_ms for row in report.timeline], "--", "tab:orange"),
        ("p50 from actual send", [row.actual_p50_ms for row in report.timeline], "--", "tab:cyan"),
    )
    for label, values, style, color in series:  # actual dashed over intended solid: both stay visible
        axes.plot(seconds, [v or float("nan") for v in values], style, color=color, marker=".", label=label)
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms)")
    load = "ramping open" if report.stages else report.mode
    axes.set_title(f"{load} loop, {report.achieved_rps:.0f} req/s achieved: latency over time")
    axes.grid(True, which="both", alpha=0.3)
    _outside(axes)


def _rate_panel(axes: Axes, report: BenchReport) -> None:
    # Each value holds for its whole second: repeat the last one at the end so the last second is drawn too.
    seconds = [row.second for row in report.timeline] + [len(report.timeline)]

    def held(values: list[float]) -> list[float]:
        return values + values[-1:]

    sent = held([row.sent for row in report.timeline])
    axes.step(seconds, sent, where="post", color="tab:green", linewidth=3, alpha=0.5, label="sent")
    completed = held([row.completed for row in report.timeline])
    axes.step(seconds, completed, where="post", color="tab:purple", linestyle="--", label="answered")
    if any(row.target_rps is not None for row in report.timeline):  # drawn last: thin, on top of the others
        targets = held([row.target_rps if row.target_rps is not None else float("nan") for row in report.timeline])
        axes.step(seconds, targets, where="post", color="black", linestyle=":", linewidth=1.5, label="target")
    axes.set_ylabel("requests / s")
    axes.set_title("rate over time")
    axes.grid(True, alpha=0.3)
    _outside(axes)


def _status_panel(axes: Axes, report: BenchReport) -> None:
    seconds = [row.second for row in report.timeline]
    codes = sorted({code for row in report.timeline for code in row.status}, key=int)
    bottom = [0.0] * len(seconds)
    colors = {"2": "tab:green", "3": "tab:blue", "4": "tab:orange", "5": "tab:red"}
    for code in codes:
        counts = [row.status.get(code, 0) for row in report.timeline]
        color = "tab:olive" if code == "429" else colors.get(code[0], "tab:gray")
        axes.bar(seconds, counts, bottom=bottom, width=1.0, align="edge", color=color, label=code, alpha=0.8)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if any(row.errors for row in report.timeline):
        errors = [row.errors for row in report.timeline]
        axes.bar(seconds, errors, bottom=bottom, width=1.0, align="edge", color="black", label="no answer")
    axes.set_xlabel("second of the run (latency: by intended send; rate and status: as they happened)")
    axes.set_ylabel("answers / s")
    axes.set_title("status codes over time")
    axes.grid(True, alpha=0.3)
    _outside(axes)


def _spectrum_panel(axes: Axes, report: BenchReport) -> None:
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator  # noqa: PLC0415 - plot extra

    def scaled(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        kept = [(100 / (100 - level), value) for level, value in points if level < 100]
        return [x for x, _ in kept], [y for _, y in kept]

    for key, label, style in (("corrected", "from intended send", "-"), ("uncorrected", "from actual send", "--")):
        xs, ys = scaled(report.spectrum_ms.get(key, []))
        if xs:
            axes.plot(xs, ys, style, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(left=1)
    axes.xaxis.set_major_locator(FixedLocator(list(_TICKS)))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FixedFormatter(list(_TICKS.values())))
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title("percentile spectrum")
    axes.grid(True, which="both", alpha=0.3)
    _outside(axes)


def _figure(report: BenchReport) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure  # noqa: PLC0415 - the plot extra is optional

    figure = Figure(figsize=(10, 12), dpi=80, layout="constrained")
    latency, rate, status, spectrum = figure.subplots(4, 1)
    rate.sharex(latency)
    status.sharex(latency)
    _latency_panel(latency, report)
    _rate_panel(rate, report)
    _status_panel(status, report)
    _spectrum_panel(spectrum, report)
    return figure


def plot(report: BenchReport, path: str | Path) -> None:
    """Draw ``report`` to ``path``: ``.png`` an image, ``.html`` a page with the plot (SVG) and the summary."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"plot file {str(path)!r} must end in .png or .html")
    figure = _figure(report)
    try:
        if path.suffix.lower() == ".png":
            figure.savefig(path, format="png")
            return
        svg = io.StringIO()
        figure.savefig(svg, format="svg")
        page = (
            "<!doctype html>\n<html><head><meta charset='utf-8'><title>snapcrawl bench</title></head><body>\n"
            f"<pre>{html.escape(summary(report))}</pre>\n{svg.getvalue()}\n</body></html>\n"
        )
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
