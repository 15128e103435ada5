"""Rate discovery: find the server's quota from its throttles and stay just under it. Pure: no clock, no I/O.

A gateway's token bucket decides each request on arrival: sent evenly under its rate, nothing is throttled; over
it, once its burst is spent, it admits exactly its rate, so the throttled share of a round of answers tells the
quota (``sending rate * (1 - throttled share)``) rather than merely "too fast". The policy, in *rounds* of
answers to requests sent at the current rate (at least ``ROUND_ANSWERS`` over ``ROUND_SECONDS``):

* **start**: nothing known, the rate doubles every short round until a throttle; the level before the last
  clean one stands (the server's burst may have kept the last one clean), and the answers still coming at the
  throttled rate, sent after the server's bucket ran dry, *gauge* the quota (:meth:`_gauged`);
* **hold** ``MARGIN`` under the estimate for ``HOLD_SECONDS``: the server's bucket refills, so jitter and
  stalls cost nothing there;
* **probe** ``PROBE_LIMIT`` above it. The first throttle there ends the probe at once (:meth:`_found`): the
  quota is where it was (refined by what the probe spent since the last throttle), and a probe costs a throttle
  or two. Clean once it has spent what the hold saved up, the probe goes ``SECOND_PROBE`` above the estimate;
  clean for ``RISE_EXCESS`` more, the quota rose: the estimate rises by ``FIRST_STEP``, doubling every clean
  round;
* **cut** on a round with throttles at or under the estimate: a heavy share measures the new quota (a round
  whose throttles go on ends after ``FAST_SECONDS``); a few, or a clump followed by clean answers (a stall that
  bunched requests), are noise.

The figures behind these constants are in docs/rate-limits.md ("Discovering the quota"). The Redis limiter
shares this policy (its batched answers do not gauge: it starts from the answers' rate at the first throttle).
"""

from __future__ import annotations

import collections
import json
import math

__all__ = ["AnswerMeter", "RateDiscovery"]


class RateDiscovery:
    """The rate to send at, from the answers to requests sent at it. ``ceiling`` bounds it (``--rate``, headers)."""

    MARGIN = 0.02
    ROUND_SECONDS = 0.2
    ROUND_ANSWERS = 20
    START_ANSWERS = 3  # with nothing measured yet, a clean round this long is enough: the climb must be quick
    START_SECONDS = 0.002  # from a low first rate: a round spans two round trips, or this if longer
    FAST_THROTTLES = 4  # a round this throttled (and FAST_SHARE of it) ends after FAST_SECONDS
    FAST_SHARE = 0.25
    FAST_SECONDS = 0.05
    HOLD_SECONDS = 0.9  # clean this long under the estimate before probing above it again
    PROBE_LIMIT = 0.04  # how far above the estimate a probe goes
    SECOND_PROBE = 0.1  # how far once the probe has spent what the hold saved up: a raised quota shows sooner
    RISE_EXCESS = 2.0  # requests the probe must send beyond what the hold saved up before the estimate rises
    FIRST_STEP = 0.1  # raises of the estimate while the probe stays clean, doubling up to MAX_STEP
    MAX_STEP = 0.25
    START_GROWTH = 2.0  # with nothing measured yet, each clean round doubles the rate (slow start)
    MAX_GROWTH = 2.0  # never probe past twice what the client actually sends: it may not be the quota that limits
    MIN_RATE = 0.5
    ROUND_TRIPS = 2.0
    SLOW_ROUND_SECONDS = 1.0  # at low rates a round may end with fewer than ROUND_ANSWERS, after this long
    MAX_CUT = 0.5
    RECOVER = 0.3  # after a moderate cut, each clean round closes this share of the gap to the rate before it
    TRUST_SHARE = 0.6  # a round throttled this much is far over the quota: its admitted rate is the estimate
    HEAVY_SHARE = 0.05  # a round throttled this much (twice or more) is judged on its own
    TOLERATED_SHARE = 0.01  # fewer throttles than this over WINDOW_SECONDS are noise: hold the rate
    WINDOW_SECONDS = 1.0
    CLUMP_SHARE = 0.25  # throttles within this share of a round's span, and clean after: a stall's clump
    PACED = 0.85  # answers within 15 % of the rate: the bucket, not the client (or a burst), set the sending rate
    GAUGE_ANSWERS = 4  # the start's first throttle: this many answers sent at its rate gauge the quota
    GAUGE_NOISE = 2.0  # a gauge counts only this many answers' worth above the estimate

    __slots__ = (
        "_before_cut",
        "_cut",
        "_first",
        "_first_step",
        "_gauge_answers",
        "_gauge_from",
        "_gauge_ok",
        "_gauge_rate",
        "_held_since",
        "_lag",
        "_last_throttle",
        "_ok",
        "_proven",
        "_proven_before",
        "_rose_by",
        "_saved",
        "_saved_for",
        "_sent",
        "_since",
        "_step",
        "_throttled",
        "_window",
        "ceiling",
        "client_bound",
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
        self._held_since = -math.inf
        self._saved = self._saved_for = self._sent = 0.0  # requests, over seconds since the last throttle
        self._proven = self._proven_before = math.nan
        self._first_step = self.FIRST_STEP
        self._rose_by = self.START_GROWTH - 1
        self._window: collections.deque[tuple[float, int, int]] = collections.deque()
        self._before_cut = math.nan
        self._cut = False
        #: Whether the last round that ended had throttles.
        self.throttled = False
        #: Whether the start's climb stopped because the client sends less than the rate: nothing to limit.
        self.client_bound = False
        self._gauge_from = math.inf  # the start's first throttle: when the request it answered was sent
        self._gauge_rate = math.nan
        self._gauge_ok = self._gauge_answers = 0

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
        self._last_throttle = math.nan
        self._lag = 0.0

    def answer(self, ticket: float, now: float, *, throttled: bool) -> bool:
        """Count the answer to a request granted at ``ticket``; whether it ended a round (``rate`` may be new)."""
        if ticket < self._since:
            if ticket > self._gauge_from:  # sent at the start's first throttled rate, after its first throttle
                self._gauge_answers += 1
                self._gauge_ok += not throttled
            return False  # sent at an earlier rate: it says nothing about this one
        if self._gauge_from < math.inf and self._gauged(now):
            return True
        return self.answers(0 if throttled else 1, 1 if throttled else 0, now, lag=now - ticket)

    def answers(self, ok: int, throttled: int, now: float, *, lag: float = 0.0, first: float | None = None) -> bool:
        """Count ``ok`` and ``throttled`` answers that had all arrived by ``now``, to requests sent at the current
        rate; whether they ended a round. ``first`` is when the first of them arrived (default ``now``).

        :meth:`answer` is this for one answer. The Redis limiter's processes report their answers in batches:
        this is how the one policy hears them.
        """
        if ok + throttled <= 0:
            return False
        empty = self._ok + self._throttled == 0
        self._ok += ok
        if throttled:
            self._throttled += throttled
            self._last_throttle = now
            rate, floor = self.rate, self._floor()
            if rate is not None and floor is not None and rate > floor:
                if self.estimate is None:  # gauge the quota with the answers still to come at this rate
                    self._gauge_from, self._gauge_rate = now - lag, rate
                    self._gauge_ok = self._gauge_answers = 0
                return self._found(floor, now, found_at=rate)
            if self._throttled == throttled:
                # The server's bucket ran dry just now: judge the round from here, not diluted by its clean start
                # (from the batch's first answer: the order within a batch is not known).
                self._ok = ok
                self._first = now if first is None else first
                self._lag = max(self._lag, lag)
                if ok + throttled == 1:
                    return False
                empty = False
        self._lag = max(self._lag, lag)
        if empty:
            self._first = now if first is None else first
        if self._ok + self._throttled == 1:
            return False
        elapsed = now - self._first
        throttles = self._throttled
        answers = self._ok + throttles
        # A round spans a few round trips, or latency jitter blurs the rate its answers come back at.
        if self.estimate is None and not throttles:  # the climb from a low first guess: short rounds
            long_enough = elapsed >= max(self.START_SECONDS, self.ROUND_TRIPS * self._lag)
            enough = self.START_ANSWERS
        else:
            long_enough = elapsed >= max(self.ROUND_SECONDS, self.ROUND_TRIPS * self._lag)
            enough = self.ROUND_ANSWERS
        if (long_enough and (answers >= enough or elapsed >= self.SLOW_ROUND_SECONDS)) or (
            # Throttles that go on (this answer is one) past FAST_SECONDS: the quota fell. A clump that stopped
            # is as likely a stall that bunched requests; the round's end judges it.
            throttled > 0
            and throttles >= self.FAST_THROTTLES
            and throttles >= self.FAST_SHARE * answers
            and elapsed >= self.FAST_SECONDS
        ):
            return self._conclude(now, answers / elapsed * (answers - 1) / answers)
        return False

    def _conclude(self, now: float, answered: float) -> bool:
        """End the round: ``answered`` is the rate its answers came back at, which is the rate they were sent at."""
        old = self.rate
        if old is not None and self.PACED * old <= answered <= old / self.PACED:
            # Paced by the bucket: it sent at ``old`` exactly, while the answers' rate is blurred by latency jitter.
            answered = old
        # Throttles bunched in a short part of the round, which went on clean after them: a stall (a host or
        # network that held requests back, then let them go together) more likely than the quota.
        clump = bool(self._ok) and self._last_throttle - self._first < self.CLUMP_SHARE * (now - self._first)
        share, noise = self._judge(now, clump=clump)
        self.throttled = self._throttled > 0
        if self.throttled:
            self._saved = self._saved_for = self._sent = 0.0
            self._proven = self._proven_before = math.nan
        elif self.estimate is not None and old is not None:
            # What the server's bucket saved up (or spent) while we sent under (or over) the estimate.
            self._saved += (self.estimate - old) * (now - self._since)
            self._saved_for += now - self._since
            self._sent += old * (now - self._since)
        if self.throttled and self._ok and noise:
            # As likely jitter or a stall as the quota: stop climbing, and cut if they add up.
            rate = old if old is not None else answered
        elif self.throttled:
            rate = self._cut_rate(old, answered, share)
            self._held_since = now
        elif self.estimate is None:
            # Nothing measured yet (a crawl's start, or a cap told or announced): double until throttled.
            rate = old if old is not None else answered
            self._proven_before, self._proven = self._proven, rate
            self._rose_by = self.START_GROWTH - 1
            rate *= self.START_GROWTH
        else:
            rate = self._probe(old if old is not None else answered, self.estimate, now)
        if old is None or rate > old:  # a raise, never past twice what the client actually sends
            rate = min(rate, max(old or 0.0, self.MAX_GROWTH * answered))
        self.client_bound = self.estimate is None and not self.throttled and old is not None and rate <= old
        self._cut = rate < (old if old is not None else answered)
        self.start(max(rate, self.MIN_RATE), now)
        return True

    def to_state(self) -> str:
        """The policy's memory as JSON, so that it outlives a process: the Redis limiter keeps it in Redis."""
        state = {}
        for name in self.__slots__:
            value = getattr(self, name, None)
            state[name] = [list(entry) for entry in value] if isinstance(value, collections.deque) else value
        return json.dumps(state)

    @classmethod
    def from_state(cls, text: str, *, ceiling: float | None = None) -> RateDiscovery:
        """A policy with the memory :meth:`to_state` wrote; a fresh one for ``""`` or anything else that is not
        such a state (it comes from a server: a wrong value is ignored, never trusted)."""
        policy = cls(ceiling=ceiling)
        try:
            state = json.loads(text) if text else {}
        except ValueError:
            return policy
        if not isinstance(state, dict):
            return policy
        for name in cls.__slots__:
            value = state.get(name)
            default = getattr(policy, name, None)
            if name == "ceiling" or name not in state:
                continue
            if isinstance(default, collections.deque):
                if isinstance(value, list):
                    default.extend(tuple(entry) for entry in value if isinstance(entry, list))
            elif value is None or isinstance(value, int | float):
                setattr(policy, name, value)
        return policy

    def _floor(self) -> float | None:
        """What a throttle found above stands for: the estimate, or while rising (or doubling at the start) the
        level before the last clean one, as the server's bucket may have kept the last one clean for a round."""
        if math.isnan(self._proven):
            return self.estimate
        return self._proven if math.isnan(self._proven_before) else self._proven_before

    def _gauged(self, now: float) -> bool:
        """The first answer to a request sent since the start's first throttle: the answers to those sent at the
        throttled rate after it, by when the server's bucket was dry, share its rate as it admits. Raise the
        estimate to that if it is clearly more (a start doubling from a low rate finds the quota only within a
        factor of two); whether it did."""
        answers, ok, rate, estimate = self._gauge_answers, self._gauge_ok, self._gauge_rate, self.estimate
        self._gauge_from = math.inf
        self._gauge_ok = self._gauge_answers = 0
        if answers < self.GAUGE_ANSWERS or estimate is None:
            return False
        gauged = rate * ok / answers
        if gauged <= estimate + self.GAUGE_NOISE * rate / answers:
            return False
        self.estimate = gauged
        self._held_since = now
        self._first_step = self._step = self.FIRST_STEP
        self.start(gauged * (1 - self.MARGIN), now)
        return True

    def _found(self, estimate: float, now: float, *, found_at: float) -> bool:
        """A throttle to a request sent at ``found_at``, above ``estimate`` (see :meth:`_floor`): the probe found
        the quota. Back under it at once, before more of the probe's requests drain the server's bucket."""
        rose = not math.isnan(self._proven)
        if self.estimate is None:
            pass  # the start's doubling: nothing was counted since a throttle
        elif not rose:
            # Pinned: the estimate, give or take what the hold and the probe were off by.
            low, high = estimate * (1 - self.MARGIN), estimate * (1 + self.PROBE_LIMIT)
            estimate = self._refined(estimate, now, found_at, low, high)
        elif math.isnan(self._proven_before):
            # Found by the first rise: the second probe may have been clean only because the estimate was a
            # little low, so the server's bucket held more than counted. What was sent since says which.
            estimate = self._refined(estimate, now, found_at, estimate / (1 + self.SECOND_PROBE), estimate)
        self.estimate = estimate
        self._saved = self._saved_for = self._sent = 0.0
        self._proven = self._proven_before = math.nan
        self.throttled = True
        self._window.clear()
        self._before_cut = math.nan
        self._cut = True
        # Pinned between the estimate and a probe above it (no rise since the last throttle): hold there. Found
        # after a rise, the quota lies somewhere in that rise: search it again with half the step, without holding.
        half = self._rose_by / 2
        if not rose or found_at <= estimate * (1 + 2 * self.PROBE_LIMIT) or half <= self.PROBE_LIMIT:
            self._held_since = now
            self._first_step = self.FIRST_STEP
        else:
            self._held_since = -math.inf
            self._first_step = min(self.FIRST_STEP, half)
        self._step = self._first_step
        self.start(estimate * (1 - self.MARGIN), now)
        return True

    def _refined(self, floor: float, now: float, found_at: float, low: float, high: float) -> float:
        """``floor`` corrected by what was sent since the last throttle, within ``low`` and ``high``: the
        server's bucket, empty then, is empty again now (a throttle to a request sent at ``found_at``), so the
        average rate in between is what it admits. Less than half a hold is too short to tell."""
        span = self._saved_for + (now - self._since)
        if span < self.HOLD_SECONDS / 2:
            return floor
        return min(max((self._sent + found_at * (now - self._since)) / span, low), high)

    def _judge(self, now: float, *, clump: bool) -> tuple[float, bool]:
        """The throttled share to act on, and whether it is noise: a few throttles are judged over the last
        ``WINDOW_SECONDS``, not this round alone, and tolerated up to ``TOLERATED_SHARE``; a clump is noise."""
        answers, throttles = self._ok + self._throttled, self._throttled
        if clump:
            return throttles / answers, True
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
        if not self._ok:
            # All throttled: the quota is below the sending rate, by how much is unknown. Halve, and measure again.
            self._before_cut = math.nan
            return answered / 2 if old is None else min(old, answered) / 2
        if share < self.HEAVY_SHARE and old is not None:
            # A few per cent: as likely a stall or jitter bunching requests as the quota. Shed them, keep the
            # estimate, and climb back if the next rounds are clean.
            self._before_cut = self._cut_from(old)
            self.estimate = min(self.estimate, old) if self.estimate is not None else None
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
        """After a clean round: climb back towards the rate before a moderate cut; hold just under the estimate
        for ``HOLD_SECONDS`` (an arrival-deciding bucket refills there, and jitter costs nothing); then probe
        ``PROBE_LIMIT`` above it. A throttle there ends the probe at once (:meth:`_found`).

        Clean at the top once it has spent what the hold saved up (what the server's bucket gained while we sent
        under the estimate), the bucket would be dry if the quota were where it was: the probe goes on
        ``SECOND_PROBE`` above the estimate, which spends ``RISE_EXCESS`` more within a round or two (a throttle
        there still only ends the probe, as the estimate never rose). Clean after that, the quota rose: raise the
        estimate from the probe's rate by the first step, and by twice the last with every further clean round,
        up to ``MAX_STEP``.
        """
        back = self._before_cut * (1 - self.MARGIN)
        if rate < back:  # concave, as CUBIC's return to W_max: quick at first, slower near it
            return min(back, rate + max(self.RECOVER * (back - rate), self.MARGIN * estimate))
        hold = estimate * (1 - self.MARGIN)
        if rate < hold:  # after a halving without a measure (all throttled): back under the estimate quickly
            return min(hold, rate * self.START_GROWTH)
        if now - self._held_since < self.HOLD_SECONDS:
            return rate
        top = estimate * (1 + self.PROBE_LIMIT)
        if rate < top:
            return top
        rising = self._step > self._first_step
        second = estimate * (1 + self.SECOND_PROBE)
        if not rising and self._saved < 0 and rate < second:
            return second
        # The first rise waits until the probe has spent what the server's bucket saved up during the hold (and
        # a little more): clean after that, the quota is at least this rate. Once risen, every clean round rises.
        if rising or self._saved < -self.RISE_EXCESS:
            self._proven_before, self._proven = self._proven, rate
            self._rose_by = self._step
            self.estimate = estimate = max(estimate, rate / (1 + self.PROBE_LIMIT)) * (1 + self._step)
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
