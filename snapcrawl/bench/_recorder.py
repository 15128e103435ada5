"""What one run measured: HDR histograms of latency, counts by status and error, and a per-second timeline.

Latency is kept twice, as wrk2 does: from each request's *intended* send time (what a user arriving on schedule
would have waited, so a stalled server shows) and from its actual send time. A third histogram holds the
scheduling lag, how late the bench itself sent each request, so its own delays are not mistaken for the server's.
Values are whole microseconds in histograms of 3 significant digits: at most 0.1% off from 1 µs to an hour.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Final

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]  # no stubs upstream

from ._report import Latency, Second

__all__ = ["HIGHEST_US", "Recorder", "is_failure", "spectrum_levels"]

HIGHEST_US: Final = 3_600_000_000  # an hour
_DIGITS: Final = 3
_TIMELINE_LEVELS: Final = (50.0, 90.0, 99.0)


def is_failure(status: int) -> bool:
    """Whether an answer counts as failed: anything but 2xx, 3xx and the throttle (429), which is counted apart."""
    return status >= 400 and status != 429


def spectrum_levels(ticks_per_half: int = 5, deepest: float = 99.9999) -> list[float]:
    """Percentiles spaced as HdrHistogram plots them: ``ticks_per_half`` between 0, 50, 75, 87.5, ... and 100."""
    levels: list[float] = []
    k = 0
    while (level := 100.0 * (1.0 - 0.5 ** (k / ticks_per_half))) < deepest:
        levels.append(round(level, 6))
        k += 1
    return [*levels, 100.0]


def _micros(seconds: float) -> int:
    return min(HIGHEST_US, max(1, round(seconds * 1_000_000)))


class _Histogram:
    """An HDR histogram of microseconds plus the exact sum (hdrhistogram's own mean walks every bucket)."""

    __slots__ = ("hdr", "total")

    def __init__(self) -> None:
        self.hdr = HdrHistogram(1, HIGHEST_US, _DIGITS)
        self.total = 0

    def record(self, micros: int) -> None:
        self.hdr.record_value(micros)
        self.total += micros

    def latency(self) -> Latency:
        """p50, p90, p99, p99.9, max and mean, in milliseconds."""
        count = self.hdr.get_total_count()
        if not count:
            return Latency(p50=0.0, p90=0.0, p99=0.0, p99_9=0.0, max=0.0, mean=0.0)
        values = self.hdr.get_percentile_to_value_dict([50.0, 90.0, 99.0, 99.9])
        return Latency(
            p50=values[50.0] / 1000,
            p90=values[90.0] / 1000,
            p99=values[99.0] / 1000,
            p99_9=values[99.9] / 1000,
            max=self.hdr.get_max_value() / 1000,
            mean=self.total / count / 1000,
        )


class _Second:
    """One second of the run: what was sent and completed in it, and the latencies of the requests due in it.

    A second's latencies are summarised (and let go) once every request due in it has been answered and a later
    second has begun, so memory stays bounded by the seconds with requests in flight.
    """

    __slots__ = ("answered", "completed", "due", "errors", "latencies", "sent", "status", "summary")

    def __init__(self) -> None:
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.status: Counter[int] = Counter()
        self.due = 0
        self.answered = 0
        self.latencies: list[int] = []
        self.summary: tuple[float, float, float, float] | None = None

    def close(self) -> None:
        """Turn the latencies into p50, p90, p99 and max, and let the list go."""
        if self.latencies:
            self.summary = _summarise(self.latencies)
        self.latencies = []


def _summarise(latencies: list[int]) -> tuple[float, float, float, float]:
    """p50, p90, p99 and max in milliseconds, exactly (nearest rank)."""
    values = sorted(latencies)
    picks = [values[max(0, math.ceil(level / 100 * len(values)) - 1)] / 1000 for level in _TIMELINE_LEVELS]
    return picks[0], picks[1], picks[2], values[-1] / 1000


class Recorder:
    """Records every request of one run; times are ``time.monotonic()`` seconds, ``start`` the run's zero."""

    __slots__ = (
        "_last_due",
        "_recent",
        "_recent_second",
        "_seconds",
        "completed",
        "corrected",
        "errors",
        "held_back",
        "lag",
        "last_done",
        "sent",
        "start",
        "status",
        "uncorrected",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.corrected = _Histogram()
        self.uncorrected = _Histogram()
        self.lag = _Histogram()
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.completed = 0
        self.held_back = 0
        self.last_done = start
        self._seconds: list[_Second] = []
        self._last_due = 0
        # Latencies completed in the latest second and the one before it, for live progress.
        self._recent: tuple[list[int], list[int]] = ([], [])
        self._recent_second = 0

    def _index(self, at: float) -> int:
        index = max(0, int(at - self.start))
        seconds = self._seconds
        while len(seconds) <= index:
            seconds.append(_Second())
        return index

    def on_send(self, *, intended: float, at: float, lag: float, held_back: bool) -> None:
        """Request due at ``intended`` goes out at ``at``, ``lag`` s after it could have; ``held_back`` by the cap."""
        self.sent += 1
        self.held_back += held_back
        self.lag.record(_micros(lag))
        self._seconds[self._index(at)].sent += 1
        due = self._index(intended)
        self._seconds[due].due += 1
        self._last_due = max(self._last_due, due)

    def on_done(self, *, intended: float, sent: float, done: float, status: int | None, error: str | None) -> None:
        """A request ended at ``done``: an answer with ``status``, or ``error`` (a transport failure)."""
        corrected = _micros(done - intended)
        self.corrected.record(corrected)
        self.uncorrected.record(_micros(done - sent))
        self.completed += 1
        self.last_done = max(self.last_done, done)
        finished = self._seconds[self._index(done)]
        finished.completed += 1
        if status is None:
            self.errors[error or "unknown"] += 1
            finished.errors += 1
        else:
            self.status[status] += 1
            finished.status[status] += 1
        due_index = self._index(intended)
        due = self._seconds[due_index]
        due.latencies.append(corrected)
        due.answered += 1
        if due.answered == due.due and due_index < self._last_due:
            due.close()
        self._note_recent(done, corrected)

    def _note_recent(self, done: float, corrected: int) -> None:
        second = int(done - self.start)
        if second != self._recent_second:
            previous = self._recent[1] if second == self._recent_second + 1 else []
            self._recent = (previous, [])
            self._recent_second = second
        self._recent[1].append(corrected)

    # -- reading ------------------------------------------------------------------------------------------------

    @property
    def throttled(self) -> int:
        """Answers that were 429."""
        return self.status[429]

    @property
    def failed(self) -> int:
        """Transport errors plus answers that were neither success nor throttle."""
        return sum(self.errors.values()) + sum(n for status, n in self.status.items() if is_failure(status))

    def latency(self) -> Latency:
        """Percentiles from the intended send times."""
        return self.corrected.latency()

    def latency_uncorrected(self) -> Latency:
        """Percentiles from the actual send times."""
        return self.uncorrected.latency()

    def scheduling_lag(self) -> Latency:
        """How late the bench sent requests against when it could have: its own delay, not the server's."""
        return self.lag.latency()

    def recent_p99(self) -> float:
        """p99 (ms) of what completed in the last whole second: cheap enough for live progress."""
        previous, current = self._recent
        values = previous or current
        return _summarise(values)[2] if values else 0.0

    def spectrum(self, *, corrected: bool = True) -> list[tuple[float, float]]:
        """``(percentile, milliseconds)`` points of the whole distribution, for the percentile plot."""
        histogram = (self.corrected if corrected else self.uncorrected).hdr
        if not histogram.get_total_count():
            return []
        values = histogram.get_percentile_to_value_dict(spectrum_levels())
        return [(level, value / 1000) for level, value in sorted(values.items())]

    def timeline(self) -> list[Second]:
        """Per second since ``start``: sent, completed and answers by status then; latency of the requests due then."""
        rows = []
        for index, second in enumerate(self._seconds):
            if second.latencies:
                second.close()
            p50, p90, p99, high = second.summary or (0.0, 0.0, 0.0, 0.0)
            rows.append(
                Second(
                    second=index,
                    sent=second.sent,
                    completed=second.completed,
                    status={str(code): n for code, n in sorted(second.status.items())},
                    errors=second.errors,
                    p50_ms=p50,
                    p90_ms=p90,
                    p99_ms=p99,
                    max_ms=high,
                )
            )
        return rows
