"""Today's fetcher calling convention over :class:`~snapcrawl.limits.local.LocalLimiter`.

Kept only while ``_session.py`` calls ``on_success()`` / ``on_throttle(sent_at=, retry_after=)``; once the fetcher
calls the :class:`~snapcrawl.limits.Limiter` protocol (tickets, headers, the returned wait) this module goes.
"""

from __future__ import annotations

import math
import time

import anyio

from .limits.local import Clock, LocalLimiter, Sleep

__all__ = ["AdaptiveRateLimiter", "Clock", "Sleep"]


class AdaptiveRateLimiter:
    """A :class:`LocalLimiter` called the old way: no headers, and successes without their ticket."""

    def __init__(
        self,
        rate_limit: float | None = None,
        *,
        burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.limiter = LocalLimiter(rate_limit, burst=burst, clock=clock, sleep=sleep)

    @property
    def active(self) -> bool:
        """Whether requests must go through :meth:`acquire`."""
        return self.limiter.active

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second, or ``None`` for no cap."""
        return self.limiter.rate

    async def acquire(self) -> float:
        """Wait for permission to send one request; return the time it was granted."""
        return await self.limiter.acquire()

    def on_success(self) -> None:
        """Feed back one answer that was not a throttle (counted as sent at the current rate)."""
        self.limiter.on_success(math.inf, {})

    def on_throttle(self, *, sent_at: float, retry_after: float | None = None) -> None:
        """Feed back a throttle of a request granted at ``sent_at``; the fetcher waits ``retry_after`` itself."""
        self.limiter.on_throttle(sent_at, retry_after, {})
