"""Conditions on a run as k6 thresholds: ``p99>500ms``, ``p95 > 0.2s``, ``errors>1%``, ``throttled>2%``, ``rps<100``.

Used two ways: ``--fail-if`` fails the run when its condition holds, ``--slo`` passes a find-max step only when
its condition holds. Latency metrics (any percentile ``pNN`` or ``pNN.N``, ``max``, ``mean``, all from the
intended send time) take a unit (``us``, ``ms``, ``s``); ``errors`` and ``throttled`` (shares of all requests)
take ``%``; ``rps`` (achieved requests per second) takes a plain number. A measured value is printed in the unit
its condition was written in.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from typing import Final, Protocol

from .._exceptions import ConfigError
from .._units import format_value, parse_latency_ms, parse_level
from ._report import ThresholdResult

__all__ = ["Metrics", "Threshold"]

_OPERATORS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_PATTERN: Final = re.compile(r"\s*([a-z][a-z0-9.]*)\s*(>=|<=|>|<)\s*([0-9]+(?:\.[0-9]*)?)\s*(us|µs|ms|s|%)?\s*")
_PERCENTILE: Final = re.compile(r"p[0-9]+(?:\.[0-9]+)?")
_KNOWN: Final = "pNN or pNN.N (any percentile), max, mean, errors, throttled, rps"


class Metrics(Protocol):
    """What a condition can be measured on: a whole report, or one find-max step."""

    @property
    def requests(self) -> int:
        """Requests answered or failed."""
        ...

    @property
    def throttled(self) -> int:
        """Answers that were 429."""
        ...

    @property
    def failed(self) -> int:
        """Transport errors and failed answers."""
        ...

    @property
    def achieved_rps(self) -> float:
        """Requests completed per second."""
        ...

    def latency_at(self, level: float) -> float:
        """The ``level`` percentile (0-100] of latency from the intended send time, in milliseconds."""
        ...

    def latency_mean(self) -> float:
        """Mean latency from the intended send time, in milliseconds."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed condition; ``limit`` is in milliseconds, a fraction, or requests per second, as written in
    ``unit`` (``None`` for rps)."""

    text: str
    metric: str
    op: str
    limit: float
    unit: str | None = None

    @classmethod
    def parse(cls, text: str, *, option: str = "--fail-if") -> Threshold:
        """Parse ``METRIC OP NUMBER[UNIT]``; raise :class:`ConfigError` naming ``option`` and what is wrong."""
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise ConfigError(f"{option} {text!r}: expected METRIC>VALUE, e.g. 'p99>500ms', 'errors>1%'")
        metric, op, number, unit = match.groups()
        what = f"{option} {text!r}"
        if metric in ("max", "mean") or _PERCENTILE.fullmatch(metric):
            if metric not in ("max", "mean"):
                parse_level(metric, option=what)
            return cls(text, metric, op, parse_latency_ms(number, unit, what=what), unit)
        if metric in ("errors", "throttled"):
            if unit != "%":
                raise ConfigError(f"{what}: {metric} is a percentage of requests, e.g. {metric}>1%")
            return cls(text, metric, op, float(number) / 100, unit)
        if metric == "rps":
            if unit is not None:
                raise ConfigError(f"{what}: rps takes a plain number, e.g. rps<100")
            return cls(text, metric, op, float(number))
        raise ConfigError(f"{what}: unknown metric {metric!r}; known: {_KNOWN}")

    def measure(self, metrics: Metrics) -> float:
        """The value of this metric (milliseconds, a fraction, or requests per second)."""
        if self.metric == "max":
            return metrics.latency_at(100.0)
        if self.metric == "mean":
            return metrics.latency_mean()
        if self.metric == "rps":
            return metrics.achieved_rps
        if self.metric in ("errors", "throttled"):
            count = metrics.failed if self.metric == "errors" else metrics.throttled
            return count / metrics.requests if metrics.requests else 0.0
        return metrics.latency_at(float(self.metric[1:]))

    def holds(self, value: float) -> bool:
        """Whether the condition holds for ``value``."""
        return _OPERATORS[self.op](value, self.limit)

    def check(self, metrics: Metrics) -> ThresholdResult:
        """Measure and compare: ``breached`` when the condition holds (a ``--fail-if`` that fires)."""
        value = self.measure(metrics)
        return ThresholdResult(condition=self.text, value=value, breached=self.holds(value), shown=self.show(value))

    def meet(self, metrics: Metrics) -> ThresholdResult:
        """Measure against an objective: ``breached`` when the condition does *not* hold (an SLO missed)."""
        value = self.measure(metrics)
        return ThresholdResult(condition=self.text, value=value, breached=not self.holds(value), shown=self.show(value))

    def show(self, value: float) -> str:
        """``value`` printed in the unit this condition was written in."""
        return format_value(value, self.unit)
