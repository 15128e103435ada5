"""The report of a bench run as typed, frozen msgspec Structs: what ``run`` returns and ``--json`` writes.

Latencies are milliseconds. The JSON field names are docs/bench.md's schema (``p99.9`` included).
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["BenchReport", "Latency", "Second", "Step", "ThresholdResult", "encode_report"]


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Percentiles of one latency distribution, in milliseconds."""

    p50: float
    p90: float
    p99: float
    p99_9: float = msgspec.field(name="p99.9")
    max: float
    mean: float


class Second(msgspec.Struct, frozen=True, kw_only=True):
    """One second of the run: ``sent`` then, ``completed``/``status``/``errors`` by completion then, and the
    latency percentiles of the requests *due* then (from their intended send time), so a stall shows where it hit.
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


class ThresholdResult(msgspec.Struct, frozen=True, kw_only=True):
    """A ``--fail-if`` condition, the value measured, and whether the condition held (the run failed)."""

    condition: str
    value: float
    breached: bool


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

    @property
    def breached(self) -> list[ThresholdResult]:
        """The ``--fail-if`` conditions that held."""
        return [result for result in self.thresholds if result.breached]


_encoder = msgspec.json.Encoder()


def encode_report(report: BenchReport) -> bytes:
    """The report as pretty JSON with a final newline."""
    return msgspec.json.format(_encoder.encode(report), indent=2) + b"\n"
