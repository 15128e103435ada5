"""The in-process limiter: a GCRA token bucket, paced by rate discovery, rate-limit headers and ``Retry-After``.

Without a cap (``rate_limit``, or a quota announced in headers), :class:`LocalLimiter` starts slowly, at
``START_RATE``, and discovery doubles it while the answers are clean: a gateway that decides on arrival throttles
only the last doubling. Once the climb outruns the client (CPU or concurrency bound it, not a quota), the limiter
is inactive until a throttle: the fetcher skips :meth:`~LocalLimiter.acquire` and
:meth:`~LocalLimiter.on_success` only counts.
The policy that sets the rate is :class:`~snapcrawl.limits._policy.RateDiscovery`; ``Retry-After`` is honoured
by the throttled request alone unless it is long or the server admits nothing (then by every request).

Time is injectable: pass ``clock`` (monotonic seconds), ``sleep`` and ``wall_clock`` so tests need no real waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from .._log import get_logger
from ._headers import Quota, read_quota
from ._policy import AnswerMeter, RateDiscovery

__all__ = ["Clock", "LocalLimiter", "Sleep", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_log = get_logger("limits")


class TokenBucket:
    """A token bucket in GCRA form: ``burst`` requests at once, then one every ``1 / rate`` seconds.

    Each caller reserves its slot before it sleeps, so concurrent callers never bunch up; a caller cancelled
    while it waits gives its slot back. Over any window of ``w`` seconds at most ``burst + rate * w``
    acquisitions succeed. ``rate=None`` means no cap.
    """

    __slots__ = (
        "_clock",
        "_epoch",
        "_interval",
        "_paused_until",
        "_sleep",
        "_tat",
        "_tolerance",
        "_waiting",
        "burst",
    )

    MAX_NAP = 0.1

    def __init__(
        self,
        rate: float | None,
        *,
        burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst}")
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tat = -math.inf
        self._paused_until = -math.inf
        self._interval = 0.0
        self._tolerance = 0.0
        self._epoch = 0
        self._waiting = 0
        self.rate = rate

    @property
    def rate(self) -> float | None:
        """Requests per second, or ``None`` for no cap. Setting it moves callers already waiting to the new rate."""
        return 1.0 / self._interval if self._interval else None

    @rate.setter
    def rate(self, value: float | None) -> None:
        self.set_rate(value, requeue=True)

    def set_rate(self, value: float | None, *, requeue: bool) -> None:
        """Change the rate; with ``requeue`` callers already waiting queue again at it, else only new ones use it."""
        if value is not None and not value > 0:
            raise ValueError(f"rate must be > 0, not {value}")
        old_interval, old_tolerance = self._interval, self._tolerance
        self._interval = 1.0 / value if value else 0.0
        self._tolerance = (self.burst - 1) * self._interval
        if requeue or not old_interval or not self._interval:
            self._requeue(old_interval)
        else:
            self._tat += self._tolerance - old_tolerance  # the next slot stays where it was

    def _requeue(self, old_interval: float) -> None:
        """Void every waiter's slot: they notice the new epoch and queue again, so their reservations come off
        the schedule; what was already granted stays on it, converted to the current rate."""
        self._epoch += 1
        now = self._clock()
        if old_interval and self._tat > now:
            granted = (self._tat - now) / old_interval - self._waiting  # let through, still "in" the bucket
            self._tat = now + max(granted, 0.0) * self._interval
        # Never more debt than an empty bucket: waiting callers will queue again on top of it.
        self._tat = min(self._tat, now + self._tolerance + self._interval)
        self._waiting = 0

    def drain(self) -> None:
        """Spend the burst: the next request waits one interval, as after a server has just run out of tokens."""
        self._tat = max(self._tat, self._clock() + self._tolerance)

    def pause_until(self, deadline: float) -> None:
        """Let no request start before ``deadline`` (a ``clock()`` time), as a server's Retry-After asks."""
        self._paused_until = max(self._paused_until, deadline)

    async def acquire(self) -> None:
        """Wait until the next request may start."""
        while True:
            now = self._clock()
            if now < self._paused_until:
                if not self._interval:
                    await self._sleep(self._paused_until - now)
                    continue
                # Resume at the steady rate after a pause, not with a full burst.
                self._tat = max(self._tat, self._paused_until + self._tolerance)
            elif not self._interval:
                return
            epoch = self._epoch
            tat = max(self._tat, now)
            self._tat = tat + self._interval
            allowed_at = tat - self._tolerance
            if allowed_at <= now:
                return
            self._waiting += 1
            slot_end = self._tat
            granted = False
            try:
                while (wait := allowed_at - self._clock()) > 0 and epoch == self._epoch:
                    # Short naps, so a rate change or a pause reaches callers that are already waiting.
                    await self._sleep(min(wait, self.MAX_NAP))
                granted = True
            finally:
                if epoch == self._epoch:
                    self._waiting -= 1
                    if not granted:
                        self._release(slot_end)
            if epoch == self._epoch and self._clock() >= self._paused_until:
                return

    def _release(self, slot_end: float) -> None:
        """Give a cancelled caller's slot back, so abandoned waits do not delay whoever comes next."""
        last = self._tat == slot_end  # nobody reserved behind it
        self._tat -= self._interval
        if not last:
            self._requeue(self._interval)  # those behind close the gap by queueing again


class LocalLimiter:
    """Paces one process's requests: a :class:`TokenBucket` whose rate is discovered, announced or told.

    ``rate_limit`` (requests/s) is a hard cap, kept ``JITTER_MARGIN`` under so that request jitter does not let
    the server count more than ``rate_limit + burst`` in a one-second window (measured: 311 at 300/s, burst 10
    without it). Under it, the rate follows :class:`RateDiscovery`; a quota announced in rate-limit headers
    lowers the cap to it (less the same margin).
    """

    JITTER_MARGIN = 0.01
    #: A Retry-After longer than this (seconds) pauses every request, not only the throttled one.
    LONG_RETRY_AFTER = 3.0
    #: Throttles for this long without a single success mean the server admits nothing: pause every request.
    STARVED_SECONDS = 2.0
    #: While no rate is in force, look at the headers and sample the answer rate every this many answers.
    LOOK_EVERY = 16
    #: A rate change larger than this share moves waiting callers too; smaller ones apply to new requests.
    REQUEUE_STEP = 0.05
    LOG_GROWTH = 1.25  # log a rise once the rate is this many times the last one logged
    #: Without a cap, the first requests go at this rate (req/s), doubling while clean: a server that decides on
    #: arrival throttles only the last doubling, instead of a whole unpaced first burst.
    START_RATE = 100.0

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
    ) -> None:
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 or None, not {rate_limit}")
        self.rate_limit = rate_limit
        self._told = None if rate_limit is None else rate_limit * (1 - self.JITTER_MARGIN)
        # A discovered rate is paced evenly (burst 1): bunching only finds a server's smaller burst.
        first = self.START_RATE if rate_limit is None else self._told
        self.bucket = TokenBucket(first, burst=burst if rate_limit is not None else 1, clock=clock, sleep=sleep)
        self._clock = clock
        self._wall_clock = wall_clock
        self._policy = RateDiscovery(ceiling=self._told)
        self._policy.start(first, clock())
        self._meter = AnswerMeter()
        self._answers = 0
        self._next_look = 1
        self._announced: float | None = None
        self._streak_start = math.nan  # the first throttle since the last success
        self._logged_rate = math.inf
        #: Whether requests must go through :meth:`acquire`: not once the client, not a quota, turned out to
        #: bound the rate (then until a throttle, a cap or a pause).
        self.active = True

    def __repr__(self) -> str:
        return f"LocalLimiter(rate_limit={self.rate_limit!r}, rate={self.rate!r}, active={self.active!r})"

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second, or ``None`` for no cap."""
        return self.bucket.rate

    @property
    def estimate(self) -> float | None:
        """The server's quota as last measured from throttles (requests/s), or ``None`` before any throttle."""
        return self._policy.estimate

    async def acquire(self) -> float:
        """Wait for permission to send one request; return the time it was granted (the ticket)."""
        await self.bucket.acquire()
        return self._clock()

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Feed back one answer that was not a throttle."""
        self._answers += 1
        if self.active:
            self._answered(ticket, headers, throttled=False)
        elif self._answers >= self._next_look:
            self._look(headers, self._clock())

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Feed back a throttle; return how long the throttled request waits before it is sent again."""
        self._answers += 1
        now = self._clock()
        if math.isnan(self._streak_start):
            self._streak_start = now
        if self.active:
            self._answered(ticket, headers, throttled=True)
        else:
            # The first throttle: start from the rate answers came back at lately (the server admitted them), or
            # if it is the first answer of all, from as little as it says; either way the policy climbs quickly.
            measured = self._meter.rate(now, self._answers)
            if measured is None:
                measured = self._answers / AnswerMeter.MIN_SPAN
            self.active = True
            self._policy.start(measured * (1 - RateDiscovery.MARGIN), now)
            self._apply(reason="throttled")
            self.bucket.drain()  # the server's bucket is empty: do not empty ours into it
            self._look(headers, now)
        if retry_after is None:
            return 0.0  # the bucket spaces the retry like any other request
        if retry_after > self.LONG_RETRY_AFTER or now - self._streak_start >= self.STARVED_SECONDS:
            self.pause(now + retry_after)
        return retry_after

    def pause(self, until: float) -> None:
        """Let no request start before ``until`` (a ``clock()`` time); the rate is measured afresh after it."""
        self.active = True
        self.bucket.pause_until(until)
        self._policy.start(self._policy.rate, until)
        _log.debug("rate.paused", seconds=round(until - self._clock(), 3))

    def _answered(self, ticket: float, headers: Mapping[str, str], *, throttled: bool) -> None:
        now = self._clock()
        if not throttled:
            self._streak_start = math.nan
        if throttled or self._answers >= self._next_look:  # a throttle's headers are worth reading at once
            self._look(headers, now)
        policy = self._policy
        if policy.answer(ticket, now, throttled=throttled):
            if policy.client_bound and policy.ceiling is None:
                # The start's climb outran the client: nothing to pace, so take the unpaced path until a throttle,
                # which starts discovery afresh: the levels this climb passed say nothing about a quota met later.
                self.active = False
                self._policy = RateDiscovery()
                self._policy.start(None, now)
                self._apply(reason="client-bound")
                return
            self._apply(reason="throttled" if policy.throttled else "probing")

    def _look(self, headers: Mapping[str, str], now: float) -> None:
        """Sample the answer rate and read the rate-limit headers (every ``LOOK_EVERY`` answers, and throttles)."""
        self._next_look = self._answers + self.LOOK_EVERY
        self._meter.mark(now, self._answers)
        quota = read_quota(headers, wall_now=self._wall_clock()) if headers else None
        if quota is not None:
            self._follow(quota, now)

    def _follow(self, quota: Quota, now: float) -> None:
        """Take an announced quota as the cap, and pause until an exhausted window resets."""
        if quota.rate is not None and quota.rate > 0 and quota.rate != self._announced:
            self._announced = quota.rate
            cap = quota.rate * (1 - self.JITTER_MARGIN)
            if self._told is not None:
                cap = min(cap, self._told)
            self._policy.ceiling = cap
            self._policy.start(cap, now)
            self.active = True
            self._apply(reason="announced")
        if quota.remaining is not None and quota.remaining < 1 and (quota.reset or 0.0) > self.LONG_RETRY_AFTER:
            self.pause(now + (quota.reset or 0.0))

    def _apply(self, *, reason: str) -> None:
        """Put the policy's rate into the bucket; log cuts at once and rises in steps of ``LOG_GROWTH``."""
        rate = self._policy.rate
        current = self.bucket.rate
        if rate == current:
            return
        big = rate is None or current is None or abs(rate - current) > self.REQUEUE_STEP * current
        self.bucket.set_rate(rate, requeue=big)
        if rate is None:
            return
        if current is None or rate < current:
            if current is None or big:
                self._logged_rate = rate
                _log.debug("rate.decreased", rate=round(rate, 2), reason=reason)
        elif rate >= self.LOG_GROWTH * self._logged_rate:
            self._logged_rate = rate
            _log.debug("rate.increased", rate=round(rate, 2), reason=reason)
