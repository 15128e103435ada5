"""The find-max search as a pure state object: which rate to try next, given which rates passed.

It doubles the rate from the start until a step fails (or ``max_rate`` passes), halves it if the first step
fails, then bisects between the highest rate that passed and the lowest that failed until they are within
``precision`` of each other. The answer is the highest rate that passed; the true limit lies below the lowest
that failed, so it is at most ``precision`` above the answer (as far as steps of this length can tell).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_PRECISION", "MIN_RATE", "RateSearch"]

DEFAULT_PRECISION: Final = 0.02
MIN_RATE: Final = 1.0


class RateSearch:
    """Chooses the next arrival rate to try from the outcomes so far."""

    __slots__ = ("failed", "max_rate", "passed", "precision", "start")

    def __init__(self, *, start: float, max_rate: float, precision: float = DEFAULT_PRECISION) -> None:
        self.start = min(start, max_rate)
        self.max_rate = max_rate
        self.precision = precision
        self.passed: float | None = None  # the highest rate that passed
        self.failed: float | None = None  # the lowest rate that failed

    def next_rate(self) -> float | None:
        """The next rate to try, or ``None`` when the search is over."""
        passed, failed = self.passed, self.failed
        if failed is None:
            if passed is None:
                return self.start
            return None if passed >= self.max_rate else min(self.max_rate, passed * 2)
        if passed is None:
            return None if failed <= MIN_RATE else max(MIN_RATE, failed / 2)
        if failed / passed - 1 <= self.precision:
            return None
        return round((passed + failed) / 2, 3)

    def record(self, rate: float, *, passed: bool) -> None:
        """Note the outcome of a step at ``rate``."""
        if passed:
            self.passed = rate if self.passed is None else max(self.passed, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)

    @property
    def result(self) -> float:
        """The highest rate that passed, 0 if none did."""
        return self.passed or 0.0

    @property
    def bound(self) -> float | None:
        """How far above the result the limit may lie, as a fraction; ``None`` if no step failed above it."""
        if self.passed is None or self.failed is None:
            return None
        return self.failed / self.passed - 1
