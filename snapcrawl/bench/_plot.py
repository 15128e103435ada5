"""``--plot``: latency percentiles over time and the percentile spectrum, as a PNG or an HTML page (matplotlib).

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


def _figure(report: BenchReport) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure  # noqa: PLC0415 - the plot extra is optional
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator  # noqa: PLC0415

    figure = Figure(figsize=(8, 7.2), dpi=80, layout="constrained")
    over_time, spectrum = figure.subplots(2, 1)
    seconds = [row.second + 0.5 for row in report.timeline]
    for name, values in (
        ("p50", [row.p50_ms for row in report.timeline]),
        ("p90", [row.p90_ms for row in report.timeline]),
        ("p99", [row.p99_ms for row in report.timeline]),
        ("max", [row.max_ms for row in report.timeline]),
    ):
        over_time.plot(seconds, [value or float("nan") for value in values], marker=".", label=name)
    over_time.set_yscale("log")
    over_time.set_xlabel("second of the run the requests were due in")
    over_time.set_ylabel("latency from intended send (ms)")
    over_time.set_title(f"{report.mode} loop, {report.achieved_rps:.0f} req/s achieved: latency over time")
    over_time.grid(True, which="both", alpha=0.3)
    over_time.legend(loc="upper right")

    def scaled(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        kept = [(100 / (100 - level), value) for level, value in points if level < 100]
        return [x for x, _ in kept], [y for _, y in kept]

    for key, label in (("corrected", "from intended send"), ("uncorrected", "from actual send")):
        xs, ys = scaled(report.spectrum_ms.get(key, []))
        if xs:
            spectrum.plot(xs, ys, label=label)
    spectrum.set_xscale("log")
    spectrum.set_yscale("log")
    spectrum.set_xlim(left=1)
    spectrum.xaxis.set_major_locator(FixedLocator(list(_TICKS)))
    spectrum.xaxis.set_minor_locator(NullLocator())
    spectrum.xaxis.set_major_formatter(FixedFormatter(list(_TICKS.values())))
    spectrum.set_xlabel("percentile")
    spectrum.set_ylabel("latency (ms)")
    spectrum.set_title("percentile spectrum")
    spectrum.grid(True, which="both", alpha=0.3)
    spectrum.legend(loc="upper left")
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
