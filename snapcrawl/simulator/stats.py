"""What the simulator has seen: totals, concurrency, arrivals, and counts per second of the quota in force.

::

    request arrives -> Stats.arrive(now) (requests, in flight, this second's row)
    answer decided  -> Stats.answered(now, status)      connection dropped -> Stats.dropped += 1
    Stats.as_dict() -> GET /_simulator/stats (for harnesses in another process)

Seconds count from the first request since the stats were created or reset, whole seconds, every second present
(rows of quiet seconds hold zeros), each with the quota in force at its start as ``quota_at`` reports it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["Second", "Stats"]


class Second:
    """The counts of one whole second since the first request: arrivals, 200s, 429s, and the quota then."""

    __slots__ = ("ok", "quota", "requests", "second", "throttled")

    def __init__(self, second: int, quota: float | None) -> None:
        self.second = second
        self.quota = quota
        self.requests = 0
        self.ok = 0
        self.throttled = 0

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {
            "second": self.second,
            "requests": self.requests,
            "ok": self.ok,
            "throttled": self.throttled,
            "quota": self.quota,
        }

    def __repr__(self) -> str:
        return (
            f"Second({self.second}, requests={self.requests}, ok={self.ok}, throttled={self.throttled}, "
            f"quota={self.quota})"
        )


def _no_quota(_now: float) -> float | None:
    return None


class Stats:
    """What the simulator has seen since it was created or :meth:`reset`.

    ``arrivals`` holds the ``time.monotonic()`` arrival of every request; ``by_status`` counts answers by HTTP
    status, ``dropped`` the connections closed without one, ``replayed`` the requests whose (timestamp,
    signature) pair had been seen before (counted while replay protection is on). ``seconds`` holds one
    :class:`Second` per second since the first request.
    """

    __slots__ = (
        "_origin",
        "arrivals",
        "by_status",
        "dropped",
        "in_flight",
        "max_in_flight",
        "quota_at",
        "replayed",
        "requests",
        "seconds",
    )

    def __init__(self, quota_at: Callable[[float], float | None] = _no_quota) -> None:
        #: The quota in force at a ``time.monotonic()`` moment; the simulator points it at its faults.
        self.quota_at = quota_at
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far; requests still in flight stay counted as in flight."""
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.dropped = 0
        self.replayed = 0
        self.max_in_flight = self.in_flight
        self.arrivals: list[float] = []
        self.seconds: list[Second] = []
        self._origin: float | None = None

    def arrive(self, now: float) -> None:
        """Count a request arriving at ``now``."""
        self.requests += 1
        self.arrivals.append(now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._row(now).requests += 1

    def answered(self, now: float, status: int) -> None:
        """Count an answer of ``status`` decided at ``now``."""
        self.by_status[status] += 1
        if status == 200:
            self._row(now).ok += 1
        elif status == 429:
            self._row(now).throttled += 1

    def _row(self, now: float) -> Second:
        if self._origin is None:
            self._origin = now
        second = int(now - self._origin)
        seconds = self.seconds
        while len(seconds) <= second:
            seconds.append(Second(len(seconds), self.quota_at(self._origin + len(seconds))))
        return seconds[second]

    def max_in_window(self, window: float = 1.0) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        arrivals, best, first = self.arrivals[:], 0, 0
        for last, stamp in enumerate(arrivals):
            while stamp - arrivals[first] >= window:
                first += 1
            best = max(best, last - first + 1)
        return best

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values, with the busiest one-second window and the per-second rows."""
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in self.by_status.items()},
            "dropped": self.dropped,
            "replayed": self.replayed,
            "max_in_flight": self.max_in_flight,
            "max_in_1s_window": self.max_in_window(1.0),
            "per_second": [row.as_dict() for row in self.seconds[:]],
        }

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, by_status={dict(self.by_status)}, dropped={self.dropped}, "
            f"in_flight={self.in_flight}, max_in_flight={self.max_in_flight})"
        )
