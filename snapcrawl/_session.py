"""One page request, done right: in-flight slot -> rate token -> sign at send time -> transport -> retry.

Every attempt is signed afresh just before it is sent. Errors are mapped to the tree in ``_exceptions`` and
carry the volume and page. A 401 whose ``Date`` header shows the local clock is off has its skew measured and
corrected once, as the AWS SDKs do, before it is reported.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Final

import anyio
import structlog

from ._config import RetryPolicy
from ._exceptions import (
    ApiError,
    AuthError,
    NotFoundError,
    RequestError,
    ServerError,
    SnapcrawlError,
    ThrottledError,
)
from ._models import SnapshotPage, decode_error_body, decode_page
from ._ratelimit import AdaptiveRateLimiter, Sleep
from ._signing import Signer
from ._stats import CrawlStats
from ._transport import Response, Transport

__all__ = ["MAX_RETRY_AFTER", "PageFetcher", "error_for_response", "parse_retry_after"]

#: The longest Retry-After honoured, in seconds; a longer one is clipped to this.
MAX_RETRY_AFTER: Final = 300.0
#: A server clock further off than this (seconds) is taken for clock skew on a 401.
CLOCK_SKEW_THRESHOLD: Final = 5.0

_AUTH_HINT = (
    "check the access key and secret key (and account id, if set), and that this machine's clock is correct: "
    "SCP rejects signatures whose timestamp is more than a few minutes off"
)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, in delta-seconds or HTTP-date form; ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_for_response(response: Response, *, volume_id: str | None, page: int | None, now: float) -> ApiError:
    """Map an error status to the error tree, with the server's detail and request id when its body has them."""
    status = response.status
    body = decode_error_body(response.body) if response.body[:1] == b"{" else None
    detail = body.detail if body else None
    request_id = body.first_request_id if body else None
    is_gateway = body is not None and not body.errors and body.error is not None
    explained = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    cls: type[ApiError]
    if status in (401, 403) or (status == 404 and is_gateway):
        cls, message = AuthError, f"credentials rejected ({explained}); {_AUTH_HINT}"
    elif status == 400:
        cls, message = RequestError, f"request rejected ({explained})"
    elif status == 404:
        cls, message = NotFoundError, f"not found ({explained})"
    elif status == 429:
        cls, message = ThrottledError, f"throttled ({explained})"
    elif status >= 500:
        cls, message = ServerError, f"server error ({explained})"
    else:
        cls, message = ApiError, f"unexpected answer ({explained})"
    return cls(
        message,
        status=status,
        detail=detail,
        request_id=request_id,
        retry_after=parse_retry_after(response.retry_after, now=now),
        volume_id=volume_id,
        page=page,
    )


class PageFetcher:
    """Fetches pages of ``GET /v1/snapshots`` with bounded concurrency, rate limiting and retries."""

    def __init__(
        self,
        *,
        endpoint: str,
        signer: Signer,
        transport: Transport,
        limiter: AdaptiveRateLimiter,
        in_flight: anyio.Semaphore,
        retry: RetryPolicy,
        stats: CrawlStats,
        sleep: Sleep = anyio.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._url = f"{endpoint}/v1/snapshots"
        self._signer = signer
        self._transport = transport
        self._limiter = limiter
        self._in_flight = in_flight
        self._retry = retry
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
        self._measured_skew = 0.0
        self.stats = stats

    async def fetch(self, query: str, *, volume_id: str | None, page: int) -> SnapshotPage:
        """Fetch and decode one page for an encoded ``query``, retrying what may succeed later.

        Raises a :class:`SnapcrawlError` naming the volume and page.
        """
        url = f"{self._url}?{query}" if query else self._url
        stats = self.stats
        attempt = 0
        clock_corrected = False
        while True:
            async with self._in_flight:
                # Until there is a cap or a throttle the limiter has nothing to say: skip the call.
                sent_at = await self._limiter.acquire() if self._limiter.active else -math.inf
                signed_offset = self._signer.clock_offset
                headers = self._signer.headers("GET", url)
                started = time.perf_counter()
                try:
                    response = await self._transport.get(url, headers)
                except SnapcrawlError as exc:
                    error: SnapcrawlError = exc
                    exc.volume_id, exc.page = volume_id, page
                    stats.requests += 1
                else:
                    stats.requests += 1
                    stats.bytes += len(response.body)
                    stats.latency.record(time.perf_counter() - started)
                    if self._log_requests:
                        self._log.debug("request", volume_id=volume_id, page=page, status=response.status)
                    if response.status == 200:
                        self._limiter.on_success()
                        stats.pages += 1
                        try:
                            return decode_page(response.body, volume_id=volume_id, page=page)
                        except SnapcrawlError as exc:
                            error = exc
                    else:
                        error = self._api_error(response, volume_id, page, sent_at)
                        if response.status == 401:
                            if not clock_corrected and self._correct_clock(response, signed_offset):
                                clock_corrected = True
                                continue
                            if clock_corrected:
                                error.message += (
                                    f"; the local clock was {self._measured_skew:+.0f} s off the server's and "
                                    "correcting for that did not help"
                                )
            if not error.retryable or attempt >= self._retry.max_retries:
                raise error
            attempt += 1
            stats.retries += 1
            delay = self._backoff(attempt, getattr(error, "retry_after", None))
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

    def _api_error(self, response: Response, volume_id: str | None, page: int, sent_at: float) -> ApiError:
        error = error_for_response(response, volume_id=volume_id, page=page, now=self._wall_clock())
        if response.status == 429 or (response.status == 503 and error.retry_after is not None):
            self.stats.throttled += response.status == 429
            self._limiter.on_throttle(sent_at=sent_at, retry_after=error.retry_after)
        else:
            self._limiter.on_success()
        return error

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))], but never less than Retry-After."""
        policy = self._retry
        delay = self._rng.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1)))
        return max(delay, retry_after or 0.0)

    def _correct_clock(self, response: Response, signed_offset: float) -> bool:
        """After a 401: whether a clock correction makes a retry worthwhile (measured from ``Date``)."""
        if self._signer.clock_offset != signed_offset:
            return True  # another request already corrected the clock since this one was signed
        if not response.date:
            return False
        try:
            server_time = email.utils.parsedate_to_datetime(response.date).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        skew = server_time - self._signer.now()
        if abs(skew) <= CLOCK_SKEW_THRESHOLD:
            return False
        self._signer.clock_offset += skew
        self._measured_skew = self._signer.clock_offset
        self._log.warning("clock.skew_corrected", skew_s=round(skew, 1))
        return True
