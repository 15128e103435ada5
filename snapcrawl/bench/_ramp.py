"""The open loop's arrival profile: a rate that holds, or ramps linearly from stage to stage (k6's
ramping-arrival-rate), and the intended send time of every request under it.

The rate ``r(t)`` is piecewise linear; request ``i`` is due when the expected count ``N(t) = ∫ r`` reaches ``i``,
so the schedule is exact (no summed sleeps) and a ramp's per-second arrivals follow its target. A constant rate
is one stage from ``r`` to ``r``; request ``i`` is then due at ``i / r``, as before.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

from .._units import Stage

__all__ = ["Profile"]


class Profile:
    """Arrival rate over time: starting at ``start`` req/s, ramping to each stage's target over its duration."""

    __slots__ = ("_bounds", "_count", "duration", "stages", "start")

    def __init__(self, stages: Sequence[Stage], *, start: float = 0.0) -> None:
        self.start = start
        self.stages = tuple(stages)
        # (t0, t1, r0, r1, count before t0) of each stage
        bounds = []
        t, rate, count = 0.0, start, 0.0
        for length, target in self.stages:
            bounds.append((t, t + length, rate, target, count))
            count += (rate + target) / 2 * length
            t, rate = t + length, target
        self._bounds = tuple(bounds)
        self._count = count
        self.duration = t

    @classmethod
    def constant(cls, rate: float, duration: float) -> Profile:
        """``rate`` req/s for ``duration`` seconds."""
        return cls(((duration, rate),), start=rate)

    @property
    def peak(self) -> float:
        """The highest rate of the profile."""
        return max([self.start, *(target for _, target in self.stages)])

    @property
    def total(self) -> int:
        """How many requests the schedule sends."""
        return math.ceil(self.expected(self.duration) - 1e-9)

    def rate_at(self, t: float) -> float:
        """The target rate (req/s) at ``t`` seconds."""
        for t0, t1, r0, r1, _ in self._bounds:
            if t0 <= t < t1:
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        return 0.0

    def expected(self, t: float) -> float:
        """Requests the schedule means to send in ``[0, t)``: ``N(t)``."""
        for t0, t1, r0, r1, before in self._bounds:
            if t < t1:
                dt = max(0.0, t - t0)
                return before + r0 * dt + (r1 - r0) * dt * dt / (2 * (t1 - t0))
        return self._count

    def times(self, *, share: tuple[int, int] = (0, 1)) -> Iterator[float]:
        """Intended send times (seconds from the start) of requests ``i ≡ index (mod of)`` for ``share = (index,
        of)``: ``of`` workers that each take every ``of``-th request of one schedule together send exactly it."""
        index, of = share
        return itertools.islice(self._all(), index, None, of)

    def _all(self) -> Iterator[float]:
        i = 0
        for t0, t1, r0, r1, before in self._bounds:
            slope = (r1 - r0) / (t1 - t0)
            while True:
                n = i - before  # requests due since this stage began
                if slope == 0:
                    if r0 <= 0:
                        break
                    dt = n / r0
                else:
                    root = r0 * r0 + 2 * slope * n
                    if root < 0:
                        break
                    dt = 2 * n / (r0 + math.sqrt(root)) if r0 + math.sqrt(root) > 0 else 0.0
                if t0 + dt >= t1 - 1e-12:
                    break
                yield t0 + dt
                i += 1

    def second_targets(self, seconds: int, *, share: int = 1) -> list[float]:
        """The expected requests per second for seconds ``0 .. seconds-1``, divided among ``share`` workers."""
        return [
            (self.expected(min(s + 1, self.duration)) - self.expected(min(s, self.duration))) / share
            for s in range(seconds)
        ]
