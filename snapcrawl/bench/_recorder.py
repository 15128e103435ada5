"""What one run measured: HDR histograms of latency, counts by status and error, and a per-second timeline.

Latency is kept twice, as wrk2 does: from each request's *intended* send time (what a user arriving on schedule
would have waited, so a stalled server shows) and from its actual send time. A third histogram holds the
scheduling lag, how late the bench itself sent each request, so its own delays are not mistaken for the server's.
Each second of the timeline has its own pair of histograms, of the requests due in it; once every such request
has been answered they are encoded (a fraction of a millisecond: a percentile would walk the counts for ten) and
let go, so memory stays bounded by the seconds with requests in flight, and saved timelines merge exactly. A
closing second is also added into the whole run's histograms (a bulk add, cheaper than recording each request
twice more). The seconds' percentiles are read from the encoded histograms when the timeline is built.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from .._units import DEFAULT_PERCENTILES
from ._hist import Histogram, micros
from ._report import Latency, SavedHistogram, Second

__all__ = ["Recorder", "is_failure"]


def is_failure(status: int) -> bool:
    """Whether an answer counts as failed: anything but 2xx, 3xx and the throttle (429), which is counted apart."""
    return status >= 400 and status != 429


class _Second:
    """One second of the run: what was sent and completed in it, and the latencies of the requests due in it."""

    __slots__ = ("actual", "answered", "completed", "due", "errors", "intended", "saved", "sent", "status")

    def __init__(self) -> None:
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.status: Counter[int] = Counter()
        self.due = 0
        self.answered = 0
        self.intended: Histogram | None = None
        self.actual: Histogram | None = None
        self.saved: tuple[str, str] | None = None

    def record(self, corrected: int, uncorrected: int) -> None:
        if self.intended is None or self.actual is None:
            self.intended, self.actual = Histogram(), Histogram()
        self.intended.record(corrected)
        self.actual.record(uncorrected)
        self.answered += 1

    def close(self, corrected: Histogram, uncorrected: Histogram) -> None:
        """Add the histograms into the whole run's, encode them (with any closed before), and let them go."""
        intended, actual = self.intended, self.actual
        if intended is None or actual is None:
            return
        corrected.add(intended)
        uncorrected.add(actual)
        if self.saved is not None:  # answers that came after an early close (a timeline read mid-run)
            intended.add(Histogram.load(SavedHistogram(hdr=self.saved[0], sum_us=0)))
            actual.add(Histogram.load(SavedHistogram(hdr=self.saved[1], sum_us=0)))
        self.saved = (intended.save().hdr, actual.save().hdr)
        self.intended = self.actual = None

    def row(self, index: int, target: float | None) -> Second:
        """This (closed) second as a timeline row, its percentiles read from the encoded histograms."""
        hdr, hdr_actual = self.saved or ("", "")
        intended = Histogram.load(SavedHistogram(hdr=hdr, sum_us=0)).values_at((50.0, 90.0, 99.0, 100.0))
        actual = Histogram.load(SavedHistogram(hdr=hdr_actual, sum_us=0)).values_at((50.0, 99.0))
        return Second(
            second=index,
            sent=self.sent,
            completed=self.completed,
            status={str(code): n for code, n in sorted(self.status.items())},
            errors=self.errors,
            p50_ms=intended[50.0],
            p90_ms=intended[90.0],
            p99_ms=intended[99.0],
            max_ms=intended[100.0],
            due=self.due,
            target_rps=target,
            actual_p50_ms=actual[50.0],
            actual_p99_ms=actual[99.0],
            hdr=hdr,
            hdr_actual=hdr_actual,
        )


def _nearest_rank(values: list[int], level: float) -> float:
    """The ``level`` percentile of ``values`` (µs, sorted) in milliseconds, by nearest rank."""
    return values[max(0, math.ceil(level / 100 * len(values)) - 1)] / 1000


class Recorder:
    """Records every request of one run; times are ``time.monotonic()`` seconds, ``start`` the run's zero.

    ``targets`` are the schedule's intended requests per second (open loop), for the timeline.
    """

    __slots__ = (
        "_corrected",
        "_last_due",
        "_recent",
        "_recent_second",
        "_seconds",
        "_uncorrected",
        "completed",
        "errors",
        "held_back",
        "lag",
        "last_done",
        "sent",
        "start",
        "status",
        "targets",
    )

    def __init__(self, start: float, *, targets: Sequence[float] = ()) -> None:
        self.start = start
        self.targets = list(targets)
        self._corrected = Histogram()
        self._uncorrected = Histogram()
        self.lag = Histogram()
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.completed = 0
        self.held_back = 0
        self.last_done = start
        self._seconds: list[_Second] = []
        self._last_due = 0
        # Latencies (µs) and failures completed in the latest second and the one before it, for the live view.
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
        self.lag.record(micros(lag))
        self._seconds[self._index(at)].sent += 1
        due = self._index(intended)
        self._seconds[due].due += 1
        self._last_due = max(self._last_due, due)

    def on_done(self, *, intended: float, sent: float, done: float, status: int | None, error: str | None) -> None:
        """A request ended at ``done``: an answer with ``status``, or ``error`` (a transport failure)."""
        corrected = micros(done - intended)
        uncorrected = micros(done - sent)
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
        due.record(corrected, uncorrected)
        if due.answered == due.due and due_index < self._last_due:
            due.close(self._corrected, self._uncorrected)
        self._note_recent(done, corrected)

    def _note_recent(self, done: float, corrected: int) -> None:
        second = int(done - self.start)
        if second != self._recent_second:
            previous = self._recent[1] if second == self._recent_second + 1 else []
            self._recent = (previous, [])
            self._recent_second = second
        self._recent[1].append(corrected)

    # -- reading ------------------------------------------------------------------------------------------------

    def _close_all(self) -> None:
        for second in self._seconds:
            second.close(self._corrected, self._uncorrected)

    @property
    def corrected(self) -> Histogram:
        """Latency from the intended send, of every request answered so far."""
        self._close_all()
        return self._corrected

    @property
    def uncorrected(self) -> Histogram:
        """Latency from the actual send, of every request answered so far."""
        self._close_all()
        return self._uncorrected

    @property
    def throttled(self) -> int:
        """Answers that were 429."""
        return self.status[429]

    @property
    def failed(self) -> int:
        """Transport errors plus answers that were neither success nor throttle."""
        return sum(self.errors.values()) + sum(n for status, n in self.status.items() if is_failure(status))

    @property
    def requests(self) -> int:
        """Requests that ended (answered, failed, or cut at the end of a step)."""
        return self.completed

    @property
    def achieved_rps(self) -> float:
        """Requests completed per second, from the first due time to the last answer."""
        elapsed = self.last_done - self.start
        return self.completed / elapsed if elapsed > 0 else 0.0

    def latency_at(self, level: float) -> float:
        """Any percentile (ms) of latency from the intended send."""
        return self.corrected.value_at(level)

    def latency_mean(self) -> float:
        """Mean latency (ms) from the intended send."""
        return self.corrected.mean()

    def latency(self, levels: Sequence[float] = DEFAULT_PERCENTILES) -> Latency:
        """Percentiles from the intended send times."""
        return self.corrected.latency(levels)

    def scheduling_lag(self) -> Latency:
        """How late the bench sent requests against when it could have: its own delay, not the server's."""
        return self.lag.latency(())

    def recent(self) -> tuple[int, float, float]:
        """Answers in the last whole second, and their p50 and p99 (ms): cheap enough for the live view."""
        previous, current = self._recent
        values = sorted(previous or current)
        if not values:
            return 0, 0.0, 0.0
        return len(values), _nearest_rank(values, 50.0), _nearest_rank(values, 99.0)

    def timeline(self) -> list[Second]:
        """Per second since ``start``: sent, completed and answers by status then; latency of the requests due then."""
        targets = self.targets
        self._close_all()
        return [
            second.row(index, targets[index] if index < len(targets) else None)
            for index, second in enumerate(self._seconds)
        ]
