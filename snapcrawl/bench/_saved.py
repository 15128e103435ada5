"""The distributions a bench report holds: latency percentiles, and HDR histograms in their lossless saved form.

Below both :mod:`._report` (which holds them) and :mod:`._hist` (which reads and writes them).
"""

from __future__ import annotations

import msgspec

__all__ = ["Histograms", "Latency", "SavedHistogram"]


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Percentiles of one latency distribution, in milliseconds."""

    p50: float
    p90: float
    p99: float
    p99_9: float = msgspec.field(name="p99.9")
    max: float
    mean: float
    #: The ``--percentiles`` levels by name (``p95``, ``p99.9``).
    percentiles: dict[str, float] = msgspec.field(default_factory=dict)


class SavedHistogram(msgspec.Struct, frozen=True, kw_only=True):
    """One HDR histogram of microseconds, losslessly: HdrHistogram's compressed V2 encoding in base64, as an
    interval log line holds it, plus the exact sum of its values."""

    hdr: str
    sum_us: int


class Histograms(msgspec.Struct, frozen=True, kw_only=True):
    """The whole run's histograms: latency from the intended send, from the actual send, and scheduling lag."""

    corrected: SavedHistogram
    uncorrected: SavedHistogram
    lag: SavedHistogram
