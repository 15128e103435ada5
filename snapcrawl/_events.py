"""One event per thing a crawler did, and the subscribers that receive it: hooks, structlog, OpenTelemetry.

Each site in the crawl core emits one frozen event object, as stamina's instrumentation and aiohttp's
``TraceConfig`` pass one params object per signal. Subscribers are :class:`Hooks` objects; the crawler's own
log lines are one more subscriber (:func:`log_hooks`), so a site never logs, counts and calls hooks separately.
Per-crawl counters stay plain counters at the same site: they cost no object.

Nothing is built for nobody: :class:`Subscribers` keeps, per kind, the tuple of callables that listen, and a
site builds its event only when that tuple is not empty.

Every callback is called synchronously in the task that did the work, so it must be quick and must not block.
An exception it raises is logged once per hook object and per crawler, and otherwise ignored: a broken exporter
never breaks a crawl.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import structlog

from ._exceptions import SnapcrawlError
from ._models import VolumeFailure

__all__ = [
    "Event",
    "Hooks",
    "RateChanged",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
    "Subscribers",
    "Throttled",
    "VolumeDone",
    "VolumeFailed",
    "log_hooks",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestSent:
    """An attempt is about to be sent (after its rate-limit wait). ``volume_id`` is ``None`` for the
    account-wide listing; ``page`` is 1-based."""

    volume_id: str | None
    page: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """An attempt ended: ``status`` is ``None`` when no answer came (connection dropped, timeout); ``seconds``
    is its latency, ``size`` the bytes of its body."""

    volume_id: str | None
    page: int
    status: int | None
    seconds: float
    size: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled:
    """The request will be sent again after ``delay`` seconds; ``attempt`` counts retries from 1."""

    volume_id: str | None
    page: int
    attempt: int
    delay: float
    error: SnapcrawlError


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Throttled:
    """The server throttled a request (429, or 503 with Retry-After); ``retry_after`` in seconds, if it said."""

    volume_id: str | None
    page: int
    retry_after: float | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RateChanged:
    """The rate limiter's rate changed: requests per second, ``None`` for no cap."""

    rate: float | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VolumeDone:
    """A listing completed, with how many snapshots it had (``volume_id`` ``None``: the account-wide one)."""

    volume_id: str | None
    snapshots: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VolumeFailed:
    """The crawl gave up on a listing: ``failure`` says which, why and how many pages were delivered."""

    failure: VolumeFailure


Event = RequestSent | ResponseReceived | RetryScheduled | Throttled | RateChanged | VolumeDone | VolumeFailed
E = TypeVar("E", bound=Event)
Callback = Callable[[E], object]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """Callbacks for what a crawler does, each receiving one event. Pass one (or several) to ``Crawler(hooks=...)``.

    - ``on_request(RequestSent)``, ``on_response(ResponseReceived)``: every attempt, as sent and as answered;
    - ``on_retry(RetryScheduled)``, ``on_throttle(Throttled)``, ``on_rate_change(RateChanged)``;
    - ``on_volume_done(VolumeDone)``, ``on_volume_failed(VolumeFailed)``: each listing's outcome.
    """

    on_request: Callback[RequestSent] | None = None
    on_response: Callback[ResponseReceived] | None = None
    on_retry: Callback[RetryScheduled] | None = None
    on_throttle: Callback[Throttled] | None = None
    on_rate_change: Callback[RateChanged] | None = None
    on_volume_done: Callback[VolumeDone] | None = None
    on_volume_failed: Callback[VolumeFailed] | None = None


def _wants_debug(log: Any) -> bool:
    """Whether per-request debug lines would be shown. An application that has not configured structlog gets its
    default, which prints everything to stdout: it is spared a line per request (but still sees retries and
    failures)."""
    is_enabled_for = getattr(log, "is_enabled_for", None)
    return structlog.is_configured() and (is_enabled_for is None or bool(is_enabled_for(logging.DEBUG)))


def log_hooks() -> Hooks:
    """The crawler's log lines as a subscriber: retries (info) and failed listings (warning) always; each
    response and rate change (debug) only when debug lines are shown, so that otherwise nothing is built."""
    log = structlog.get_logger("snapcrawl")

    def on_response(event: ResponseReceived) -> None:
        log.debug("request", volume_id=event.volume_id, page=event.page, status=event.status)

    def on_rate_change(event: RateChanged) -> None:
        log.debug("rate.changed", rate=event.rate)

    def on_retry(event: RetryScheduled) -> None:
        log.info(
            "request.retry",
            volume_id=event.volume_id,
            page=event.page,
            attempt=event.attempt,
            status=getattr(event.error, "status", None),
            error=type(event.error).__name__,
            delay=round(event.delay, 3),
        )

    def on_volume_failed(event: VolumeFailed) -> None:
        failure = event.failure
        log.warning("volume.failed", where=failure.where, pages_done=failure.pages_done, error=str(failure.error))

    debug = _wants_debug(log.bind())
    return Hooks(
        on_response=on_response if debug else None,
        on_rate_change=on_rate_change if debug else None,
        on_retry=on_retry,
        on_volume_failed=on_volume_failed,
    )


class Subscribers:
    """One crawler's subscribers, by kind of event: a site emits only when its tuple is not empty.

    A callback that raises is logged once (per callback object, for this crawler) and otherwise ignored.
    """

    __slots__ = (
        "_broken",
        "_log",
        "rate_changed",
        "request_sent",
        "response_received",
        "retry_scheduled",
        "throttled",
        "volume_done",
        "volume_failed",
    )

    def __init__(self, hooks: Iterable[Hooks] = ()) -> None:
        every = tuple(hooks)
        self.request_sent: tuple[Callback[RequestSent], ...] = _listening(h.on_request for h in every)
        self.response_received: tuple[Callback[ResponseReceived], ...] = _listening(h.on_response for h in every)
        self.retry_scheduled: tuple[Callback[RetryScheduled], ...] = _listening(h.on_retry for h in every)
        self.throttled: tuple[Callback[Throttled], ...] = _listening(h.on_throttle for h in every)
        self.rate_changed: tuple[Callback[RateChanged], ...] = _listening(h.on_rate_change for h in every)
        self.volume_done: tuple[Callback[VolumeDone], ...] = _listening(h.on_volume_done for h in every)
        self.volume_failed: tuple[Callback[VolumeFailed], ...] = _listening(h.on_volume_failed for h in every)
        self._broken: set[int] = set()  # ids of callbacks already reported; each is held by a tuple above
        self._log = structlog.get_logger("snapcrawl")

    def emit(self, callbacks: tuple[Callback[E], ...], event: E) -> None:
        """Give ``event`` to each of ``callbacks`` (one of this object's tuples)."""
        for callback in callbacks:
            try:
                callback(event)
            except Exception as exc:  # a metrics exporter must never break the crawl
                self._report(callback, exc)

    def _report(self, callback: Callable[..., object], exc: Exception) -> None:
        if id(callback) in self._broken:
            return
        self._broken.add(id(callback))
        name = getattr(callback, "__qualname__", None) or repr(callback)
        self._log.warning("hook.failed", hook=name, error=f"{type(exc).__name__}: {exc}")


def _listening(callbacks: Iterable[Callback[E] | None]) -> tuple[Callback[E], ...]:
    return tuple(callback for callback in callbacks if callback is not None)
