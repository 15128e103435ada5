"""One page request, done right: in-flight slot -> rate -> sign at send time -> transport -> retry.

Every attempt is signed afresh just before it is sent, and the transport never resends on its own, so no
signature goes out twice (gateways reject a replayed timestamp/signature pair with 401). A 401 is retried once,
newly signed, when it may be a fluke: after this crawler's credentials were already accepted, or when the
server's ``Date`` shows the local clock is off (the skew is then measured and corrected, as the AWS SDKs do).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import structlog

from ._config import RetryPolicy
from ._errors import error_for_response, http_date
from ._exceptions import ApiError, SnapcrawlError, detach
from ._hooks import Hooks, fire
from ._models import SnapshotPage, decode_page
from ._signing import Signer
from ._stats import CrawlStats
from ._transport import Response, Transport
from .limits import Limiter

__all__ = ["CLOCK_SKEW_THRESHOLD", "PageFetcher"]

#: A server clock further off than this (seconds) is taken for clock skew on a 401.
CLOCK_SKEW_THRESHOLD: Final = 5.0

Sleep = Callable[[float], Awaitable[None]]


class PageFetcher:
    """Fetches pages of ``GET /v1/snapshots`` with bounded concurrency, rate limiting and retries.

    One fetcher serves every crawl of a :class:`Crawler`; each call names the :class:`CrawlStats` it counts in.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        signer: Signer,
        transport: Transport,
        limiter: Limiter,
        in_flight: anyio.Semaphore,
        retry: RetryPolicy,
        hooks: Hooks | None = None,
        sleep: Sleep = anyio.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.url = f"{endpoint}/v1/snapshots"
        self.signer = signer
        self.limiter = limiter
        self._transport = transport
        self._in_flight = in_flight
        self._retry = retry
        self._hooks = hooks or Hooks()
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._log = structlog.get_logger("snapcrawl").bind()
        # Per-request events cost a call and a dict even when filtered out: ask once whether anyone listens. An
        # application that has not configured structlog gets its default, which prints everything to stdout: it
        # is spared a line per request (but still sees retries, failures and the crawl's start and end).
        is_enabled_for = getattr(self._log, "is_enabled_for", None)
        self._log_requests = structlog.is_configured() and (
            is_enabled_for is None or bool(is_enabled_for(logging.DEBUG))
        )
        self._accepted = False  # whether the server has accepted this crawler's signature at least once
        self._rate = limiter.rate

    def now(self) -> float:
        """The corrected Unix time: the local clock plus the skew measured from the server's ``Date``."""
        return self._wall_clock() + self.signer.clock_offset

    async def fetch(self, query: str, *, volume_id: str | None, page: int, stats: CrawlStats) -> SnapshotPage:
        """Fetch and decode one page for an encoded ``query``, retrying what may succeed later.

        Raises a :class:`SnapcrawlError` naming the volume and page.
        """
        url = f"{self.url}?{query}" if query else self.url
        limiter = self.limiter
        attempt = 0
        resent_401 = False
        response: Response | None = None
        decoded: SnapshotPage | None = None
        while True:
            delay: float | None = None
            async with self._in_flight:
                # Until there is a cap or a throttle the limiter has nothing to say: skip the call.
                ticket = await limiter.acquire() if limiter.active else -math.inf
                signed_offset = self.signer.clock_offset
                headers = self.signer.headers("GET", url)  # now, and never the same signature twice
                try:
                    response = await self._send(url, headers, volume_id, page, stats)
                except SnapcrawlError as exc:
                    error: SnapcrawlError = exc
                else:
                    if response.status == 200:
                        self._accepted = True
                        limiter.on_success(ticket, response.headers)
                        if limiter.active:  # no cap and no throttle yet: no rate to have changed
                            self._rate_changed()
                        try:
                            decoded = decode_page(response.body, volume_id=volume_id, page=page)
                        except SnapcrawlError as exc:
                            error = exc
                        else:
                            stats.pages += 1
                            return decoded
                    else:
                        error, delay = self._api_error(response, ticket, volume_id, page, stats)
                        if response.status == 401:
                            if not resent_401 and self._worth_resending(response, signed_offset):
                                resent_401 = True
                                continue
                            if self.signer.clock_offset:
                                error.message += (
                                    f"; the local clock was {self.signer.clock_offset:+.0f} s off the server's and "
                                    "correcting for that did not help"
                                )
            if not error.retryable or attempt >= self._retry.max_retries:
                raise error
            response = decoded = None  # nothing of the failed answer is held while waiting
            detach(error)
            attempt += 1
            await self._wait_to_retry(attempt, delay, error, volume_id=volume_id, page=page, stats=stats)

    async def _send(
        self, url: str, headers: dict[str, str], volume_id: str | None, page: int, stats: CrawlStats
    ) -> Response:
        """Send one signed attempt; count it, time it and tell the hooks."""
        hooks = self._hooks
        if hooks.on_request is not None:
            fire(hooks.on_request, volume_id, page)
        started = time.perf_counter()
        try:
            response = await self._transport.get(url, headers)
        except SnapcrawlError as exc:
            exc.volume_id, exc.page = volume_id, page
            stats.requests += 1
            if hooks.on_response is not None:
                fire(hooks.on_response, volume_id, page, None, time.perf_counter() - started)
            raise
        elapsed = time.perf_counter() - started
        stats.requests += 1
        stats.bytes += len(response.body)
        stats.latency.record(elapsed)
        if hooks.on_response is not None:
            fire(hooks.on_response, volume_id, page, response.status, elapsed)
        if self._log_requests:
            self._log.debug("request", volume_id=volume_id, page=page, status=response.status)
        return response

    async def _wait_to_retry(
        self,
        attempt: int,
        delay: float | None,
        error: SnapcrawlError,
        *,
        volume_id: str | None,
        page: int,
        stats: CrawlStats,
    ) -> None:
        stats.retries += 1
        if delay is None:
            delay = self._backoff(attempt)
        fire(self._hooks.on_retry, volume_id, page, attempt, delay, error)
        self._log.info(
            "request.retry",
            volume_id=volume_id,
            page=page,
            attempt=attempt,
            status=getattr(error, "status", None),
            error=type(error).__name__,
            delay=round(delay, 3),
        )
        await self._sleep(delay)

    def _api_error(
        self, response: Response, ticket: float, volume_id: str | None, page: int, stats: CrawlStats
    ) -> tuple[ApiError, float | None]:
        """The error for a non-200 answer, after feeding the limiter; and this request's wait if throttled."""
        error = error_for_response(response, volume_id=volume_id, page=page, now=self.now())
        delay: float | None = None
        if response.status == 429 or (response.status == 503 and error.retry_after is not None):
            stats.throttled += 1
            delay = self.limiter.on_throttle(ticket, error.retry_after, response.headers)
            if self._hooks.on_throttle is not None:
                fire(self._hooks.on_throttle, volume_id, page, error.retry_after)
        else:
            self.limiter.on_success(ticket, response.headers)
        self._rate_changed()
        return error, delay

    def _rate_changed(self) -> None:
        rate = self.limiter.rate
        if rate != self._rate:
            self._rate = rate
            self._log.debug("rate.changed", rate=rate)
            fire(self._hooks.on_rate_change, rate)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
        policy = self._retry
        return self._rng.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1)))

    def _worth_resending(self, response: Response, signed_offset: float) -> bool:
        """After a 401: whether one more attempt, newly signed, may succeed.

        Yes when another request corrected the clock since this one was signed, when the server's ``Date`` shows
        a skew worth correcting (it is corrected here), or when these credentials were accepted before (the 401
        may be a gateway's verdict on one request, such as a replay it saw from a resend somewhere on the way).
        """
        if self.signer.clock_offset != signed_offset:
            return True
        server_time = http_date(response.date)
        if server_time is not None:
            skew = server_time - self.now()
            if abs(skew) > CLOCK_SKEW_THRESHOLD:
                self.signer.clock_offset += skew
                self._log.warning("clock.skew_corrected", skew_s=round(skew, 1))
                return True
        return self._accepted
