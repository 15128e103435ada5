"""The report of a bench run as typed, frozen msgspec Structs: what ``run`` returns, ``--json`` and ``--save``
write, and ``snapcrawl bench report`` reads back.

Latencies are milliseconds. The JSON field names are docs/bench.md's schema (``p99.9`` included). The saved HDR
histograms (whole run and per second) make the JSON lossless: ``bench report`` merges runs from them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .._exceptions import ConfigError
from ._saved import Histograms, Latency, SavedHistogram

__all__ = [
    "FORMAT",
    "BenchReport",
    "Histograms",
    "Latency",
    "SavedHistogram",
    "Second",
    "Step",
    "ThresholdResult",
    "decode_report",
    "encode_report",
]

#: The saved form's version; ``bench report`` refuses others with a clear error.
FORMAT = 2


class Second(msgspec.Struct, frozen=True, kw_only=True):
    """One second of the run: ``sent`` then, ``completed``/``status``/``errors`` by completion then, and the
    latency percentiles of the requests *due* then (from their intended send time), so a stall shows where it hit.
    ``target_rps`` is what the schedule meant to send then (open loop), ``due`` how many requests it scheduled;
    ``hdr``/``hdr_actual`` hold the latencies of the requests due then (from intended and actual send), so that
    merged timelines keep exact percentiles.
    """

    second: int
    sent: int
    completed: int
    status: dict[str, int]
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    due: int = 0
    target_rps: float | None = None
    actual_p50_ms: float = 0.0
    actual_p99_ms: float = 0.0
    hdr: str = ""
    hdr_actual: str = ""


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One rate tried by the find-max search, and whether the endpoint sustained it."""

    target_rps: float
    achieved_rps: float
    requests: int
    throttled: int
    failed: int
    p99_ms: float
    scheduling_lag_p99_ms: float
    scheduling_lag_max_ms: float
    passed: bool
    reason: str
    #: Each ``--slo`` objective measured in this step; ``breached`` when it was missed.
    slo: list[ThresholdResult] = msgspec.field(default_factory=list)


class ThresholdResult(msgspec.Struct, frozen=True, kw_only=True):
    """A condition, the value measured (ms, a fraction or req/s) and as printed in the condition's unit
    (``shown``), and ``breached``: a ``--fail-if`` that held, or an ``--slo`` that was missed."""

    condition: str
    value: float
    breached: bool
    shown: str = ""


class BenchReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one bench run measured. With find-max, the figures are those of the highest sustained step."""

    mode: Literal["open", "closed", "find-max"]
    endpoint: str
    requests: int
    duration_s: float
    target_rps: float | None
    achieved_rps: float
    concurrency: int | None
    max_in_flight: int
    status: dict[str, int]
    errors: dict[str, int]
    throttled: int
    failed: int
    held_back: int
    latency_ms: Latency
    latency_uncorrected_ms: Latency
    scheduling_lag_ms: Latency
    timeline: list[Second]
    spectrum_ms: dict[str, list[tuple[float, float]]]
    warnings: list[str] = msgspec.field(default_factory=list)
    thresholds: list[ThresholdResult] = msgspec.field(default_factory=list)
    max_sustainable_rps: float | None = None
    search_precision: float | None = None
    steps: list[Step] | None = None
    #: The ``--slo`` objectives at the highest sustained step (find-max).
    slo: list[ThresholdResult] = msgspec.field(default_factory=list)
    #: ``(seconds, target req/s)`` of a ``--stages`` ramp.
    stages: list[tuple[float, float]] = msgspec.field(default_factory=list)
    #: Wall-clock (Unix) time of the schedule's zero: merged runs line their timelines up by it.
    started_at: float = 0.0
    #: Load-generating processes (or merged saved runs) behind this report.
    workers: int = 1
    #: The run's settings (credentials left out), for the record.
    settings: dict[str, Any] = msgspec.field(default_factory=dict)
    histograms: Histograms | None = None
    format: int = FORMAT

    @property
    def breached(self) -> list[ThresholdResult]:
        """The ``--fail-if`` conditions that held."""
        return [result for result in self.thresholds if result.breached]

    def latency_at(self, level: float) -> float:
        """Any percentile (ms) of latency from the intended send, from the saved histogram."""
        from ._hist import Histogram  # noqa: PLC0415 - hdrh is loaded only to read a saved histogram

        if self.histograms is not None:
            return Histogram.load(self.histograms.corrected).value_at(level)
        fixed = {50.0: self.latency_ms.p50, 90.0: self.latency_ms.p90, 99.0: self.latency_ms.p99}
        fixed |= {99.9: self.latency_ms.p99_9, 100.0: self.latency_ms.max}
        if level in fixed:
            return fixed[level]
        raise ConfigError(f"p{level:g} needs the report's histograms, and this report has none")

    def latency_mean(self) -> float:
        """Mean latency (ms) from the intended send."""
        return self.latency_ms.mean


_encoder = msgspec.json.Encoder()


def encode_report(report: BenchReport) -> bytes:
    """The report as pretty JSON with a final newline."""
    return msgspec.json.format(_encoder.encode(report), indent=2) + b"\n"


def decode_report(data: bytes, *, source: str) -> BenchReport:
    """A report written by ``--json`` or ``--save``; anything else is a :class:`ConfigError` naming ``source``."""
    try:
        report = msgspec.json.decode(data, type=BenchReport)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source} is not a snapcrawl bench report: {exc}") from None
    if report.format != FORMAT:
        raise ConfigError(f"{source} is a saved run of format {report.format}; this snapcrawl reads format {FORMAT}")
    if report.histograms is None:
        raise ConfigError(
            f"{source} has no saved histograms (an older snapcrawl wrote it): run it again with --save or --json"
        )
    return report
