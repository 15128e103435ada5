"""HDR histograms of microseconds: recording, merging, reading percentiles, and the lossless saved form.

Values are whole microseconds in histograms of 3 significant digits: at most 0.1% off from 1 µs to an hour. The
saved form is HdrHistogram's own compressed V2 encoding in base64 (what ``HistogramLogWriter`` writes in an
interval log, readable by the Java, C, Go and Rust ports), plus the exact sum of the values, so merging two saved
histograms gives exactly the histogram of both runs' samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]  # no stubs upstream

from .._exceptions import ConfigError
from .._units import DEFAULT_PERCENTILES, level_name
from ._saved import Histograms, Latency, SavedHistogram

__all__ = ["HIGHEST_US", "Histogram", "figures", "micros", "spectrum_levels"]

HIGHEST_US: Final = 3_600_000_000  # an hour
_DIGITS: Final = 3


def micros(seconds: float) -> int:
    """Seconds as whole microseconds within the histogram's range."""
    return min(HIGHEST_US, max(1, round(seconds * 1_000_000)))


def spectrum_levels(ticks_per_half: int = 5, deepest: float = 99.9999) -> list[float]:
    """Percentiles spaced as HdrHistogram plots them: ``ticks_per_half`` between 0, 50, 75, 87.5, ... and 100."""
    levels: list[float] = []
    k = 0
    while (level := 100.0 * (1.0 - 0.5 ** (k / ticks_per_half))) < deepest:
        levels.append(round(level, 6))
        k += 1
    return [*levels, 100.0]


class Histogram:
    """An HDR histogram of microseconds plus the exact sum (hdrhistogram's own mean walks every bucket)."""

    __slots__ = ("hdr", "total")

    def __init__(self) -> None:
        self.hdr = HdrHistogram(1, HIGHEST_US, _DIGITS)
        self.total = 0

    def record(self, value: int) -> None:
        """Add one value in microseconds."""
        self.hdr.record_value(value)
        self.total += value

    @property
    def count(self) -> int:
        """How many values were recorded."""
        count: int = self.hdr.get_total_count()
        return count

    def add(self, other: Histogram) -> None:
        """Add every value of ``other``."""
        self.hdr.add(other.hdr)
        self.total += other.total

    def value_at(self, level: float) -> float:
        """The ``level`` percentile in milliseconds (100: the maximum); 0 when empty."""
        if not self.count:
            return 0.0
        if level >= 100:
            return float(self.hdr.get_max_value()) / 1000
        return float(self.hdr.get_value_at_percentile(level)) / 1000

    def values_at(self, levels: Iterable[float]) -> dict[float, float]:
        """Several percentiles (ms) in one walk of the counts (each :meth:`value_at` walks them again)."""
        wanted = sorted(set(levels))
        if not self.count:
            return dict.fromkeys(wanted, 0.0)
        below = [level for level in wanted if level < 100]
        values = self.hdr.get_percentile_to_value_dict(below) if below else {}
        found = {level: float(values[level]) / 1000 for level in below}
        return found | {level: float(self.hdr.get_max_value()) / 1000 for level in wanted if level >= 100}

    def mean(self) -> float:
        """The exact mean in milliseconds; 0 when empty."""
        return self.total / self.count / 1000 if self.count else 0.0

    def latency(self, levels: Sequence[float] = DEFAULT_PERCENTILES) -> Latency:
        """The fixed columns (p50, p90, p99, p99.9, max, mean) and ``levels`` by name, in milliseconds."""
        at = self.values_at([50.0, 90.0, 99.0, 99.9, 100.0, *levels])
        return Latency(
            p50=at[50.0],
            p90=at[90.0],
            p99=at[99.0],
            p99_9=at[99.9],
            max=at[100.0],
            mean=self.mean(),
            percentiles={level_name(level): at[level] for level in levels},
        )

    def spectrum(self) -> list[tuple[float, float]]:
        """``(percentile, milliseconds)`` points of the whole distribution, for the percentile plot."""
        if not self.count:
            return []
        values = self.hdr.get_percentile_to_value_dict(spectrum_levels())
        return [(level, value / 1000) for level, value in sorted(values.items())]

    def save(self) -> SavedHistogram:
        """The lossless saved form."""
        return SavedHistogram(hdr=self.hdr.encode().decode("ascii"), sum_us=self.total)

    @classmethod
    def load(cls, saved: SavedHistogram, *, source: str = "report") -> Histogram:
        """Read a saved histogram back; a damaged one is a :class:`ConfigError` naming ``source``."""
        histogram = cls()
        if saved.hdr:
            try:
                histogram.hdr.decode_and_add(saved.hdr.encode("ascii"))
            except Exception as exc:
                raise ConfigError(f"{source}: a histogram does not decode ({type(exc).__name__}: {exc})") from None
        histogram.total = saved.sum_us
        return histogram

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        """One histogram holding every value of ``histograms``."""
        total = cls()
        for histogram in histograms:
            total.add(histogram)
        return total


def figures(corrected: Histogram, uncorrected: Histogram, lag: Histogram, levels: Sequence[float]) -> dict[str, Any]:
    """The report fields the three whole-run histograms give: latencies, spectrum, and the histograms saved."""
    return {
        "latency_ms": corrected.latency(levels),
        "latency_uncorrected_ms": uncorrected.latency(levels),
        "scheduling_lag_ms": lag.latency(levels),
        "spectrum_ms": {"corrected": corrected.spectrum(), "uncorrected": uncorrected.spectrum()},
        "histograms": Histograms(corrected=corrected.save(), uncorrected=uncorrected.save(), lag=lag.save()),
    }
