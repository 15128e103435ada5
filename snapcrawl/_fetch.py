"""One page request, done right: in-flight slot -> rate -> sign at send time -> transport -> retry.

Every attempt is signed afresh just before it is sent, and the transport never resends on its own, so no
signature goes out twice (gateways reject a replayed timestamp/signature pair with 401). A 401 is retried once,
newly signed, when it may be a fluke: after this crawler's credentials were already accepted, or when the
server's ``Date`` shows the local clock is off (the skew is then measured and corrected, as the AWS SDKs do).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Final

import anyio

from ._config import RetryPolicy
from ._errors import error_for_response, http_date
from ._events import RateChanged, RequestSent, ResponseReceived, RetryScheduled, Subscribers, Throttled, log_hooks
from ._exceptions import ApiError, SnapcrawlError, TransportError, detach
from ._log import get_logger
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
        events: Subscribers | None = None,
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
        #: Who listens to this fetcher's events (hooks, logging, OpenTelemetry): the crawler's, shared by its runs.
        self.events = events or Subscribers([log_hooks()])
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._log = get_logger("fetch")
        self._accepted = False  # whether the server has accepted this crawler's signature at least once
        self._rate = limiter.rate

    def now(self) -> float:
        """The corrected Unix time: the local clock plus the skew measured from the server's ``Date``."""
        return self._wall_clock() + self.signer.clock_offset

    async def fetch(  # noqa: PLR0912, PLR0915 - the per-request path, inline on purpose (see the comments)
        self, query: str, *, volume_id: str | None, page: int, stats: CrawlStats
    ) -> SnapshotPage:
        """Fetch and decode one page for an encoded ``query``, retrying what may succeed later.

        Raises a :class:`SnapcrawlError` naming the volume and page.
        """
        url = f"{self.url}?{query}" if query else self.url
        limiter, events, transport, in_flight, signer = (
            self.limiter,
            self.events,
            self._transport,
            self._in_flight,
            self.signer,
        )
        attempt = 0
        resent_401 = False
        response: Response | None = None
        decoded: SnapshotPage | None = None
        while True:
            delay: float | None = None
            # The awaited acquire checks for cancellation even when a slot is free (a tenth of this method's time):
            # that check is what keeps a stopped crawl from sending one more request, so it stays. Acquired and
            # released as ``async with in_flight`` does, without its two coroutines (__aenter__, __aexit__).
            await in_flight.acquire()
            try:
                # Until there is a cap or a throttle the limiter has nothing to say: skip the call.
                ticket = await limiter.acquire() if limiter.active else -math.inf
                signed_offset = signer.clock_offset
                headers = signer.headers("GET", url)  # now, and never the same signature twice
                if events.request_sent:
                    events.emit(events.request_sent, RequestSent(volume_id=volume_id, page=page))
                started = perf_counter()
                try:  # awaited here, not in a helper coroutine: one frame less on every resume
                    response = await transport.get(url, headers)
                except SnapcrawlError as exc:
                    exc.volume_id, exc.page = volume_id, page
                    self._answered(stats, volume_id, page, status=None, elapsed=perf_counter() - started)
                    error: SnapcrawlError = exc
                except anyio.get_cancelled_exc_class():
                    if anyio.current_effective_deadline() == -math.inf:
                        raise  # this crawl is being cancelled
                    error = _stray_cancellation(volume_id, page)
                    self._answered(stats, volume_id, page, status=None, elapsed=perf_counter() - started)
                else:
                    elapsed = perf_counter() - started
                    body = response.body
                    if response.status == 200:
                        # The usual answer, handled inline: counted as _answered does, then decoded and counted.
                        stats.requests += 1
                        stats.bytes += len(body)
                        stats.latency.record(elapsed)
                        if events.response_received:
                            self._received(volume_id, page, 200, elapsed, len(body))
                        self._accepted = True
                        limiter.on_success(ticket, response.headers)
                        if limiter.active or self._rate is not None:  # unpaced (rate None): nothing changed
                            self._rate_changed()
                        try:
                            decoded = decode_page(body, volume_id=volume_id, page=page)
                        except SnapcrawlError as exc:
                            error = exc
                        else:
                            stats.pages += 1
                            return decoded
                    else:
                        self._answered(stats, volume_id, page, status=response.status, elapsed=elapsed, size=len(body))
                        error, delay, resend = self._refused(
                            response,
                            ticket,
                            volume_id,
                            page,
                            stats,
                            signed_offset=signed_offset,
                            may_resend=not resent_401,
                        )
                        if resend:
                            resent_401 = True
                            continue
            finally:
                in_flight.release()
            if not error.retryable or attempt >= self._retry.max_retries:
                raise error
            response = decoded = None  # nothing of the failed answer is held while waiting
            detach(error)
            attempt += 1
            await self._wait_to_retry(attempt, delay, error, volume_id=volume_id, page=page, stats=stats)

    def _refused(
        self,
        response: Response,
        ticket: float,
        volume_id: str | None,
        page: int,
        stats: CrawlStats,
        *,
        signed_offset: float,
        may_resend: bool,
    ) -> tuple[ApiError, float | None, bool]:
        """A non-200 answer: its error, this request's wait if throttled, and whether to resend it now (a 401 that
        may be a fluke, once). A 401 not resent says so when the local clock had been corrected, since that did
        not help."""
        error, delay = self._api_error(response, ticket, volume_id, page, stats)
        if response.status == 401:
            if may_resend and self._worth_resending(response, signed_offset):
                return error, delay, True
            if self.signer.clock_offset:
                error.message += (
                    f"; the local clock was {self.signer.clock_offset:+.0f} s off the server's and "
                    "correcting for that did not help"
                )
        return error, delay, False

    def _answered(
        self, stats: CrawlStats, volume_id: str | None, page: int, *, status: int | None, elapsed: float, size: int = 0
    ) -> None:
        """Count one attempt (``status`` ``None``: no answer came), time it, and tell whoever listens."""
        stats.requests += 1
        if status is not None:
            stats.bytes += size
            stats.latency.record(elapsed)
        if self.events.response_received:
            self._received(volume_id, page, status, elapsed, size)

    def _received(self, volume_id: str | None, page: int, status: int | None, elapsed: float, size: int) -> None:
        event = ResponseReceived(volume_id=volume_id, page=page, status=status, seconds=elapsed, size=size)
        self.events.emit(self.events.response_received, event)

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
        if listeners := self.events.retry_scheduled:
            event = RetryScheduled(volume_id=volume_id, page=page, attempt=attempt, delay=delay, error=error)
            self.events.emit(listeners, event)
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
            if listeners := self.events.throttled:
                self.events.emit(listeners, Throttled(volume_id=volume_id, page=page, retry_after=error.retry_after))
        else:
            self.limiter.on_success(ticket, response.headers)
        self._rate_changed()
        return error, delay

    def _rate_changed(self) -> None:
        rate = self.limiter.rate
        if rate != self._rate:
            self._rate = rate
            if listeners := self.events.rate_changed:
                self.events.emit(listeners, RateChanged(rate=rate))

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


def _stray_cancellation(volume_id: str | None, page: int) -> TransportError:
    """A cancellation of a request that nobody asked for (a timeout gone astray in the HTTP client, say).

    A task group drops a task that ends in such a cancellation without a word, and the crawl would then end as if
    the listing were complete: it is a failed request instead, retried like any other. The task's pending
    ``cancel()`` requests are taken back, so that the timeouts of its later requests still work.
    """
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()
    return TransportError("the request was cancelled inside the HTTP client", volume_id=volume_id, page=page)
