"""The client side of a run: the first-page URLs, signing and sending each request, recording it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Final

import anyio

from .._exceptions import AuthError, SnapcrawlError
from .._signing import Signer, encode_query
from .._transport import Transport
from ._config import BenchConfig
from ._ramp import Profile
from ._recorder import Recorder
from ._schedule import closed_loop, open_loop

__all__ = ["UNANSWERED", "Client", "Live", "check_credentials"]

UNANSWERED: Final = "no answer when the step ended"


@dataclasses.dataclass(frozen=True, slots=True)
class Live:
    """The run so far, handed to a progress callback about twice a second; ``rate``, ``p50_ms`` and ``p99_ms``
    are of the answers in the last whole second."""

    elapsed: float
    target_rps: float | None
    sent: int
    completed: int
    in_flight: int
    throttled: int
    failed: int
    p99_ms: float
    step: int | None = None
    rate: float = 0.0
    p50_ms: float = 0.0


def _first_page_urls(endpoint: str, config: BenchConfig) -> tuple[str, ...]:
    """The first page of each volume (or of the account listing), exactly as the crawler asks for it."""
    params = {"limit": str(config.page_size), "with_count": "true"}
    if config.name is not None:
        params["name"] = config.name
    if config.sort is not None:
        params["sort"] = config.sort
    base = f"{endpoint}/v1/snapshots?"
    if not config.volume_ids:
        return (base + encode_query(params),)
    return tuple(base + encode_query(params | {"volume_id": volume_id}) for volume_id in config.volume_ids)


def _error_kind(exc: SnapcrawlError) -> str:
    """A short, stable name for a failure, for counting: the message up to its first colon."""
    return str(exc).split(":", 1)[0][:80] or type(exc).__name__


class Client:
    """Sends and records requests; each load phase (a run, or a find-max step) gets a fresh :class:`Recorder`."""

    def __init__(
        self,
        config: BenchConfig,
        *,
        endpoint: str,
        transport: Transport,
        signer: Signer,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        self.transport = transport
        self.signer = signer
        self.clock = clock
        self.urls = _first_page_urls(endpoint, config)
        self.recorder = Recorder(clock())
        self.target: float | None = None
        self.profile: Profile | None = None
        self.concurrency: int | None = None
        self.step: int | None = None
        self.share = (0, 1)
        #: The ``clock()`` time workers agreed to start at: the open loop's zero, so a late start shows as lag.
        self.zero: float | None = None
        self._next = 0
        self._targets: list[float] = []

    def _begin(self, start: float) -> None:
        self.recorder = Recorder(start, targets=self._targets)

    async def send(self, intended: float, ready: float, held_back: bool) -> None:
        """Sign and send the next first-page request now; record it against ``intended``."""
        recorder, clock, urls = self.recorder, self.clock, self.urls
        url = urls[self._next % len(urls)]
        self._next += 1
        sent = clock()
        recorder.on_send(intended=intended, at=sent, lag=sent - ready, held_back=held_back)
        try:
            response = await self.transport.get(url, self.signer.headers("GET", url))
        except SnapcrawlError as exc:
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=None, error=_error_kind(exc))
        except anyio.get_cancelled_exc_class():
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=None, error=UNANSWERED)
            raise
        else:
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=response.status, error=None)

    # -- load models ------------------------------------------------------------------------------------------

    async def open(self, profile: Profile, *, drain: float | None = None) -> Recorder:
        """An open loop on ``profile`` (this worker's share of it); its recorder."""
        of = self.share[1]
        self.profile = profile
        self.target = profile.total / profile.duration / of
        self._targets = profile.second_targets(math.ceil(profile.duration), share=of)
        await open_loop(
            self.send,
            times=profile.times(share=self.share),
            max_in_flight=self.config.max_in_flight,
            drain=drain,
            clock=self.clock,
            on_start=self._begin,
            start=self.zero,
        )
        self.zero = None  # an agreed start holds for the first load phase only
        return self.recorder

    async def closed(self, concurrency: int, duration: float) -> Recorder:
        """A closed loop of ``concurrency`` workers for ``duration`` seconds; its recorder."""
        self.profile, self._targets, self.concurrency = None, [], concurrency
        await closed_loop(self.send, concurrency=concurrency, duration=duration, clock=self.clock, on_start=self._begin)
        return self.recorder

    def live(self) -> Live:
        """The current phase so far."""
        recorder = self.recorder
        elapsed = self.clock() - recorder.start
        target, profile = self.target, self.profile
        if profile is not None:  # where a ramp is now
            target = profile.rate_at(min(elapsed, profile.duration - 1e-9)) / self.share[1]
        rate, p50, p99 = recorder.recent()
        return Live(
            elapsed=elapsed,
            target_rps=target,
            sent=recorder.sent,
            completed=recorder.completed,
            in_flight=recorder.sent - recorder.completed,
            throttled=recorder.throttled,
            failed=recorder.failed,
            p99_ms=p99,
            step=self.step,
            rate=rate,
            p50_ms=p50,
        )

    async def report_progress(self, progress: Callable[[Live], None]) -> None:
        """Call ``progress`` about twice a second until cancelled."""
        while True:
            await anyio.sleep(0.5)
            progress(self.live())


def check_credentials(recorder: Recorder) -> None:
    """Every answer a 401 or 403 means the credentials were rejected: measuring that would mislead."""
    answers = sum(recorder.status.values())
    rejected = recorder.status[401] + recorder.status[403]
    if answers and rejected == answers:
        raise AuthError(f"every answer ({answers}) was 401 or 403: the endpoint rejected the credentials", status=401)
