"""The baseline: snapcrawl's limiter before rate discovery (botocore's adaptive mode), as the Limiter protocol.

Kept verbatim but for the method signatures, so ``benchmarks.studies.quota`` can set it side by side with the new one.

The adaptation is botocore's CUBIC scheme (``botocore/retries/adaptive.py``, ``standard.py``; CUBIC as in
RFC 8312): on a throttle the rate drops to ``beta`` (0.7) times the measured sending rate; on success it grows
back along ``C * (t - K)**3 + W_max``, concave up to the last known-good rate ``W_max`` and probing beyond it.
Unlike botocore, a throttle in the first half second uses the rate measured so far rather than 0, and the
rate is cut once per congestion event rather than once per throttled response: with 64 requests in flight, a
burst of 429s would otherwise cut it 64 times over.

Time is injectable: pass ``clock`` (monotonic seconds) and ``sleep`` so tests need no real waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import anyio
import structlog

from snapcrawl.limits.local import Clock, Sleep, TokenBucket

__all__ = ["AdaptiveRateLimiter", "CubicRate", "RateMeter"]

_log = structlog.get_logger("snapcrawl")


class RateMeter:
    """The smoothed rate of responses, in half-second buckets (botocore's ``RateClocker``)."""

    __slots__ = ("_bucket_scale", "_count", "_hold_until", "_last_bucket", "_smoothing", "_start", "measured")

    def __init__(self, *, smoothing: float = 0.8, bucket_seconds: float = 0.5) -> None:
        self._smoothing = smoothing
        self._bucket_scale = 1.0 / bucket_seconds
        self._start = math.nan  # set by the first response: idle time before it is not a sending rate
        self._last_bucket = math.nan
        self._count = 0
        self._hold_until = 0.0
        self.measured = 0.0

    def _early(self, now: float) -> float:
        """Before the first full bucket: the average since the first response."""
        return self._count / max(now - self._start, 0.05)

    def hold(self, now: float, until: float) -> None:
        """Measure nothing until ``until``: a pause the server asked for is not a drop in our sending rate."""
        if not self.measured and self._count:
            self.measured = self._early(now)
        self._hold_until = max(self._hold_until, until)

    def record(self, now: float) -> float:
        """Count one response at ``now`` and return the measured rate."""
        bucket = math.floor(now * self._bucket_scale) / self._bucket_scale
        if self._hold_until:
            if now < self._hold_until:
                return self.measured
            self._hold_until = 0.0
            self._last_bucket, self._count = bucket, 0
        if not self._count and math.isnan(self._start):
            self._start, self._last_bucket = now, bucket
        self._count += 1
        if bucket > self._last_bucket:
            current = self._count / (bucket - self._last_bucket)
            self.measured = current * self._smoothing + self.measured * (1 - self._smoothing)
            self._count = 0
            self._last_bucket = bucket
        elif not self.measured:
            return self._early(now)
        return self.measured


class CubicRate:
    """CUBIC rate control as botocore's ``CubicCalculator``: ``rate(t) = C * (t - K)**3 + W_max``."""

    __slots__ = ("_beta", "_k", "_last_fail", "_scale", "_w_max")

    def __init__(self, start_rate: float, now: float, *, scale: float = 0.4, beta: float = 0.7) -> None:
        self._scale = scale
        self._beta = beta
        self._w_max = start_rate
        self._last_fail = now
        self._k = self._zero_point()

    def _zero_point(self) -> float:
        return math.cbrt(self._w_max * (1 - self._beta) / self._scale)

    def success(self, now: float) -> float:
        """The rate to use after a success at ``now``."""
        return self._scale * (now - self._last_fail - self._k) ** 3 + self._w_max

    def throttled(self, rate: float, now: float) -> float:
        """The rate to use after a throttle at ``now`` while sending at ``rate``."""
        self._w_max = rate
        self._k = self._zero_point()
        self._last_fail = now
        return rate * self._beta


class AdaptiveRateLimiter:
    """A token bucket capped at ``rate_limit`` (if any) that slows down on throttling and probes back up.

    Adaptation starts with the first throttle; until then only ``rate_limit`` applies, so an uncapped client
    costs nothing. A ``Retry-After`` pauses every request of the limiter until it has passed.

    The cap runs ``JITTER_MARGIN`` (1%) under ``rate_limit``: requests reach the server a few milliseconds apart
    from when they were sent, and without the margin that jitter lets a server count one or two more than
    ``rate_limit + burst`` in some one-second window (measured: 311 at 300/s, burst 10). 1% absorbs 10 ms.
    """

    JITTER_MARGIN = 0.01
    MIN_RATE = 0.5
    MAX_RATE_GROWTH = 2.0
    RATE_STEP = 0.05
    LOG_GROWTH = 1.25  # log a rise once the rate is this many times the last one logged

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.rate_limit = rate_limit
        self._cap = None if rate_limit is None else rate_limit * (1 - self.JITTER_MARGIN)
        self.bucket = TokenBucket(self._cap, burst=burst, clock=clock, sleep=sleep)
        self._clock = clock
        self._meter = RateMeter()
        self._cubic = CubicRate(0.0, clock())
        self._adapting = False
        self._last_cut = -math.inf
        self._responses = 0
        self._first_response = 0.0
        self._logged_rate = math.inf
        #: Whether requests must go through :meth:`acquire`; until there is a cap or a throttle, they need not.
        self.active = rate_limit is not None

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second, or ``None`` for no cap."""
        return self.bucket.rate

    async def acquire(self) -> float:
        """Wait for permission to send one request; return the time it was granted (pass it to on_throttle)."""
        await self.bucket.acquire()
        return self._clock()

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Feed back one answer that was not a throttle."""
        if self._adapting:
            now = self._clock()
            self._set_rate(self._cubic.success(now), self._meter.record(now))
        else:
            self._count_response()

    def _count_response(self) -> None:
        """Before adapting, only count answers: their average rate is all a first throttle needs."""
        if not self._responses:
            self._first_response = self._clock()
        self._responses += 1

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Feed back a throttle (429, or 503 with Retry-After) of a request granted at ``sent_at``.

        Like TCP, the rate is cut once per congestion event: throttles of requests that were already on their
        way when the rate was last cut do not cut it again.
        """
        sent_at = ticket
        if not self._adapting:
            self._count_response()
        now = self._clock()
        if self._adapting:
            measured = self._meter.record(now)
        else:
            measured = self._meter.measured = self._responses / max(now - self._first_response, 0.05)
        if retry_after:
            self.bucket.pause_until(now + retry_after)
            self._meter.hold(now, now + retry_after)
        if self._adapting and sent_at <= self._last_cut:
            return retry_after or 0.0
        current = self.bucket.rate
        sending = measured if not self._adapting or current is None else min(measured, current)
        self._adapting = self.active = True
        self._last_cut = now
        self._set_rate(self._cubic.throttled(sending, now), measured)
        self._logged_rate = self.bucket.rate or 0.0
        _log.info("rate.decreased", rate=round(self._logged_rate, 2), measured=round(measured, 2))
        return retry_after or 0.0

    def _set_rate(self, rate: float, measured: float) -> None:
        rate = max(self.MIN_RATE, min(rate, self.MAX_RATE_GROWTH * max(measured, self.MIN_RATE)))
        if self._cap is not None:
            rate = min(rate, self._cap)
        current = self.bucket.rate
        # Small steps are not worth voiding every waiter's slot for.
        if current is None or abs(rate - current) > self.RATE_STEP * current:
            self.bucket.rate = rate
            if rate >= self.LOG_GROWTH * self._logged_rate:
                self._logged_rate = rate
                _log.info("rate.increased", rate=round(rate, 2))
