"""``--fail-if`` conditions as k6 thresholds: ``p99>500ms``, ``errors>1%``, ``throttled>2%``, ``rps<100``.

A condition that holds fails the run (exit status 1). Latency metrics (``p50``, ``p90``, ``p99``, ``p99.9``,
``max``, ``mean``, from the intended send time) take a unit (``us``, ``ms``, ``s``); ``errors`` and ``throttled``
(fractions of all requests) take ``%``; ``rps`` (achieved requests per second) takes a plain number.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from typing import Final

from .._exceptions import ConfigError
from ._report import BenchReport, ThresholdResult

__all__ = ["Threshold"]

_LATENCY: Final = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p99_9", "max": "max", "mean": "mean"}
_TIME_UNITS: Final = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_OPERATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_PATTERN: Final = re.compile(r"\s*([a-z][a-z0-9.]*)\s*(>=|<=|>|<)\s*([0-9]+(?:\.[0-9]*)?)\s*(us|µs|ms|s|%)?\s*")


@dataclasses.dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed condition; ``limit`` is in milliseconds, a fraction, or requests per second."""

    text: str
    metric: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse ``METRIC OP NUMBER[UNIT]``; raise :class:`ConfigError` naming what is wrong."""
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise ConfigError(f"--fail-if {text!r}: expected METRIC>VALUE, e.g. 'p99>500ms', 'errors>1%'")
        metric, op, number, unit = match.groups()
        value = float(number)
        if metric in _LATENCY:
            if unit is None or unit == "%":
                raise ConfigError(f"--fail-if {text!r}: {metric} needs a time unit (us, ms or s), e.g. {metric}>500ms")
            return cls(text, metric, op, value * _TIME_UNITS[unit])
        if metric in ("errors", "throttled"):
            if unit != "%":
                raise ConfigError(f"--fail-if {text!r}: {metric} is a percentage of requests, e.g. {metric}>1%")
            return cls(text, metric, op, value / 100)
        if metric == "rps":
            if unit is not None:
                raise ConfigError(f"--fail-if {text!r}: rps takes a plain number, e.g. rps<100")
            return cls(text, metric, op, value)
        known = ", ".join([*_LATENCY, "errors", "throttled", "rps"])
        raise ConfigError(f"--fail-if {text!r}: unknown metric {metric!r}; known: {known}")

    def measure(self, report: BenchReport) -> float:
        """The value of this metric in ``report`` (milliseconds, a fraction, or requests per second)."""
        if self.metric in _LATENCY:
            value: float = getattr(report.latency_ms, _LATENCY[self.metric])
            return value
        if self.metric == "rps":
            return report.achieved_rps
        count = report.failed if self.metric == "errors" else report.throttled
        return count / report.requests if report.requests else 0.0

    def check(self, report: BenchReport) -> ThresholdResult:
        """Measure and compare: ``breached`` when the condition holds."""
        value = self.measure(report)
        return ThresholdResult(condition=self.text, value=value, breached=_OPERATORS[self.op](value, self.limit))
