"""Rate discovery: find the server's quota from its throttles and stay just under it. Pure: no clock, no I/O.

Against a token-bucket server the share of requests it throttles tells its rate directly: it admits
``sending rate * (1 - throttled share)``. So rather than cutting the rate by a fixed factor on every throttle
(AIMD, CUBIC), each *round* (at least ``ROUND_ANSWERS`` answers over ``ROUND_SECONDS``, counting only requests
sent at the current rate) ends in one of two ways:

* some answers were throttled: the admitted rate of the round is the quota estimate and the rate becomes
  ``estimate * (1 - MARGIN)``. A round that is mostly throttles (start-up, a quota cut) ends early;
* none were: probe upwards, by ``FIRST_STEP`` and doubling with every further clean round up to ``MAX_STEP``, so
  a raised quota is found within seconds, while the probes of a steady state stay 1-2 % above the quota for one
  round at most.

The figures behind these constants are in docs/rate-limits.md. The Redis limiter can share this policy.
"""

from __future__ import annotations

import collections
import math

__all__ = ["AnswerMeter", "RateDiscovery"]


class RateDiscovery:
    """The rate to send at, from the answers to requests sent at it. ``ceiling`` bounds it (``--rate``, headers)."""

    MARGIN = 0.02
    ROUND_SECONDS = 0.2
    ROUND_ANSWERS = 20
    FAST_THROTTLES = 8  # a round this throttled (and FAST_SHARE of it) ends after FAST_SECONDS
    FAST_SHARE = 0.25
    FAST_SECONDS = 0.05
    PROBE_STEP = 0.01  # of the estimate, per clean round
    PROBE_LIMIT = 0.03  # how far above the estimate probing climbs before it waits
    RISE_SECONDS = 0.5
    FIRST_STEP = 0.05  # multiplicative probing when there is no estimate, and raises of the estimate
    MAX_STEP = 0.25
    MAX_GROWTH = 2.0  # never probe past twice what the client actually sends: it may not be the quota that limits
    MIN_RATE = 0.5
    ROUND_TRIPS = 2.0
    SLOW_ROUND_SECONDS = 1.0  # at low rates a round may end with fewer than ROUND_ANSWERS, after this long
    MAX_CUT = 0.3
    RECOVER = 0.3  # after a moderate cut, each clean round closes this share of the gap to the rate before it
    TRUST_SHARE = 0.6  # a round throttled this much is far over the quota: its admitted rate is the estimate
    HEAVY_SHARE = 0.05  # a round throttled this much (twice or more) is judged on its own
    TOLERATED_SHARE = 0.01  # fewer throttles than this over WINDOW_SECONDS are noise: hold the rate
    WINDOW_SECONDS = 1.0
    PACED = 0.85  # answers within 15 % of the rate: the bucket, not the client (or a burst), set the sending rate

    __slots__ = (
        "_before_cut",
        "_cut",
        "_first",
        "_lag",
        "_ok",
        "_since",
        "_step",
        "_throttled",
        "_top_since",
        "_window",
        "ceiling",
        "estimate",
        "rate",
        "throttled",
    )

    def __init__(self, *, ceiling: float | None = None) -> None:
        #: The rate to send at (requests/s), or ``None`` while nothing is known and nothing needs limiting.
        self.rate: float | None = None
        self.ceiling = ceiling
        #: The last quota estimate: what the server admitted in the last throttled round.
        self.estimate: float | None = None
        self._since = -math.inf
        self._ok = self._throttled = 0
        self._first = math.nan
        self._step = self.FIRST_STEP
        self._top_since = math.nan
        self._window: collections.deque[tuple[float, int, int]] = collections.deque()
        self._before_cut = math.nan
        self._cut = False
        #: Whether the last round that ended had throttles.
        self.throttled = False

    def start(self, rate: float | None, now: float) -> None:
        """Send at ``rate`` (clamped to the ceiling) from ``now`` on; answers to requests sent earlier are ignored."""
        if rate is not None:
            rate = max(rate, self.MIN_RATE)
            if self.ceiling is not None:
                rate = min(rate, self.ceiling)
        elif self.ceiling is not None:
            rate = self.ceiling
        self.rate = rate
        self._since = now
        self._ok = self._throttled = 0
        self._first = math.nan
        self._lag = 0.0

    def answer(self, ticket: float, now: float, *, throttled: bool) -> bool:
        """Count the answer to a request granted at ``ticket``; whether it ended a round (``rate`` may be new)."""
        if ticket < self._since:
            return False  # sent at an earlier rate: it says nothing about this one
        if throttled:
            self._throttled += 1
        else:
            self._ok += 1
        self._lag = max(self._lag, now - ticket)
        if self._ok + self._throttled == 1:
            self._first = now
            return False
        elapsed = now - self._first
        throttles = self._throttled
        answers = self._ok + throttles
        # A round spans a few round trips, or latency jitter blurs the rate its answers come back at.
        long_enough = elapsed >= max(self.ROUND_SECONDS, self.ROUND_TRIPS * self._lag)
        if (long_enough and (answers >= self.ROUND_ANSWERS or elapsed >= self.SLOW_ROUND_SECONDS)) or (
            throttles >= self.FAST_THROTTLES and throttles >= self.FAST_SHARE * answers and elapsed >= self.FAST_SECONDS
        ):
            return self._conclude(now, answers / elapsed * (answers - 1) / answers)
        return False

    def _conclude(self, now: float, answered: float) -> bool:
        """End the round: ``answered`` is the rate its answers came back at, which is the rate they were sent at."""
        old = self.rate
        if old is not None and self.PACED * old <= answered <= old / self.PACED:
            # Paced by the bucket: it sent at ``old`` exactly, while the answers' rate is blurred by latency jitter.
            answered = old
        share, noise = self._judge(now)
        self.throttled = self._throttled > 0
        if self.throttled and self._ok and noise:
            # As likely jitter or a stall as the quota: stop climbing, and cut if they add up.
            rate = old if old is not None else answered
            self._top_since = math.nan
        elif self.throttled:
            rate = self._cut_rate(old, answered, share)
        elif self.estimate is None:
            # Nothing measured yet (a cap was told or announced): probe multiplicatively.
            base = old if old is not None else answered
            rate = base * (1 + self._step)
            self._step = min(2 * self._step, self.MAX_STEP)
        else:
            rate = self._probe(old if old is not None else answered, self.estimate, now)
        if old is None or rate > old:  # a raise, never past twice what the client actually sends
            rate = min(rate, max(old or 0.0, self.MAX_GROWTH * answered))
        self._cut = rate < (old if old is not None else answered)
        self.start(max(rate, self.MIN_RATE), now)
        return True

    def _judge(self, now: float) -> tuple[float, bool]:
        """The throttled share to act on, and whether it is noise: a few throttles are judged over the last
        ``WINDOW_SECONDS``, not this round alone, and tolerated up to ``TOLERATED_SHARE``."""
        answers, throttles = self._ok + self._throttled, self._throttled
        window = self._window
        window.append((now, answers, throttles))
        while now - window[0][0] > self.WINDOW_SECONDS:
            window.popleft()
        seen = sum(entry[1] for entry in window)
        throttled = sum(entry[2] for entry in window)
        share = throttles / answers
        if throttles < 2 or share < self.HEAVY_SHARE:
            share = throttled / seen
        return share, throttled < 2 or share <= self.TOLERATED_SHARE

    def _cut_rate(self, old: float | None, answered: float, share: float) -> float:
        """The rate after a round with ``share`` of its answers throttled, more than noise."""
        self._window.clear()
        self._step = self.FIRST_STEP
        self._top_since = math.nan
        if not self._ok:
            # All throttled: the quota is below the sending rate, by how much is unknown. Halve, and measure again.
            self._before_cut = math.nan
            return answered / 2 if old is None else min(old, answered) / 2
        if share < self.HEAVY_SHARE and old is not None:
            # A few per cent: as likely a stall or jitter bunching requests as the quota. Shed them, keep the
            # estimate, and climb back if the next rounds are clean.
            self._before_cut = self._cut_from(old)
            return old * (1 - share) * (1 - self.MARGIN)
        self.estimate = answered * (1 - share)
        self._before_cut = math.nan
        if old is not None and share < self.TRUST_SHARE:
            # A moderate share may be a server with a small burst wasting tokens on a slightly fast, even stream
            # (burst 1 admits half of it), or a stall that bunched requests: cut by MAX_CUT at most, and climb
            # back quickly towards the rate before the cut unless it is throttled again.
            self.estimate = max(self.estimate, old * (1 - self.MAX_CUT))
            self._before_cut = self._cut_from(old)
        rate = self.estimate * (1 - self.MARGIN)
        return rate if old is None else min(rate, old)  # a throttled round never raises the rate

    def _cut_from(self, old: float) -> float:
        """The rate to climb back to after a moderate cut: before the first of several cuts in a row (a stall
        cuts round after round), but only the last one's once a clean round came between (the quota may be
        lower after all)."""
        if self._cut and not math.isnan(self._before_cut):
            return max(old, self._before_cut)
        return old

    def _probe(self, rate: float, estimate: float, now: float) -> float:
        """After a clean round: climb back towards the rate before a moderate cut; then climb linearly to
        ``PROBE_LIMIT`` above the estimate, and wait there.

        Clean for ``RISE_SECONDS`` at the limit means the quota rose (or the server's burst is deep): raise the
        estimate by ``FIRST_STEP`` doubling with every further rise up to ``MAX_STEP``.
        """
        back = self._before_cut * (1 - self.MARGIN)
        if rate < back:  # concave, as CUBIC's return to W_max: quick at first, slower near it
            return min(back, rate + max(self.RECOVER * (back - rate), self.PROBE_STEP * estimate))
        top = estimate * (1 + self.PROBE_LIMIT)
        if rate < top:
            self._top_since = math.nan
            return min(rate + self.PROBE_STEP * estimate, top)
        if math.isnan(self._top_since):
            self._top_since = now
        elif now - self._top_since >= self.RISE_SECONDS:
            self._top_since = math.nan
            self.estimate = estimate = estimate * (1 + self._step)
            self._step = min(2 * self._step, self.MAX_STEP)
        return max(rate, estimate * (1 + self.PROBE_LIMIT))


class AnswerMeter:
    """Answers per second over the last ``HORIZON`` seconds, from a running count sampled now and then.

    The caller counts answers itself (an integer increment is all the unlimited hot path affords) and calls
    :meth:`mark` every few answers; samples older than the horizon are dropped, so an idle hour is forgotten
    rather than averaged in.
    """

    HORIZON = 2.0
    MIN_SPAN = 0.1  # the first answers of a crawl arrive together: do not divide by a few milliseconds

    __slots__ = ("_marks",)

    def __init__(self) -> None:
        self._marks: collections.deque[tuple[float, int]] = collections.deque()

    def mark(self, now: float, count: int) -> None:
        """Record that ``count`` answers had been seen by ``now``."""
        self._forget(now)
        self._marks.append((now, count))

    def rate(self, now: float, count: int) -> float | None:
        """The answer rate over the horizon, or ``None`` if no sample is recent enough."""
        self._forget(now)
        if not self._marks:
            return None
        then, before = self._marks[0]
        return (count - before) / max(now - then, self.MIN_SPAN)

    def _forget(self, now: float) -> None:
        marks = self._marks
        while marks and now - marks[0][0] > self.HORIZON:
            marks.popleft()
