"""The fleet's crawl: every account at once, each within its own quota and concurrency, one cap on them all.

Each account gets its own :class:`~snapcrawl.Crawler` (its endpoint, keys, limiter and ``concurrency``), and all
of them share one cap on requests in flight, held only while a request is on the wire (never while an account's
limiter makes it wait), so a slow or throttled account does not hold back the others. An account that fails
(bad keys, an unreachable endpoint, its destination) fails alone: its :class:`AccountOutcome` says why, and the
other accounts run to their end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._config import DEFAULT_API_VERSION, DEFAULT_RETRY, RetryPolicy
from .._crawler import Crawler
from .._events import Hooks
from .._exceptions import SnapcrawlError
from .._models import Page, VolumeFailure
from .._stats import CrawlStats
from .._transport import AiohttpTransport, Response, Transport
from ..limits import Limiter
from ..sinks import Sink
from ._config import AccountConfig

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "AccountOutcome", "AccountPage", "Fleet", "read_volume_ids"]

VolumeIds = Iterable[object] | AsyncIterable[object] | None

#: Requests in flight across every account of a fleet, unless told otherwise.
DEFAULT_MAX_IN_FLIGHT = 256


@dataclasses.dataclass(frozen=True, slots=True)
class AccountPage:
    """A page of one account's crawl, tagged with the account's name."""

    account: str
    page: Page


@dataclasses.dataclass(slots=True)
class AccountOutcome:
    """How one account's crawl went: its counts, the volumes it gave up on, and the error that stopped it."""

    name: str
    stats: CrawlStats = dataclasses.field(default_factory=CrawlStats)
    failures: list[VolumeFailure] = dataclasses.field(default_factory=list)
    error: SnapcrawlError | None = None
    finished: bool = False

    @property
    def ok(self) -> bool:
        """Whether the account ran to its end with nothing failed."""
        return self.finished and self.error is None and not self.failures


def read_volume_ids(path: Path) -> Iterator[str]:
    """Volume ids from a file: one a line, blank lines and ``#`` comments skipped (read lazily)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if (volume_id := line.strip()) and not volume_id.startswith("#"):
                yield volume_id


class _CappedTransport:
    """A transport whose requests also take a slot of the fleet's shared cap, while on the wire."""

    def __init__(self, inner: Transport, cap: anyio.Semaphore) -> None:
        self._inner = inner
        self._cap = cap

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        async with self._cap:
            return await self._inner.get(url, headers)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Fleet:
    """Crawls many accounts at once; ``concurrency``, ``rate`` and ``burst`` apply where an account sets none.

    ``limiters`` maps account names to limiters of their own (for example a :class:`RedisLimiter` per account,
    each on its own key); other accounts get a local limiter at their ``rate``. ``max_in_flight`` caps requests in
    flight across the fleet. :meth:`crawl_into` writes each account into a sink of its own; :meth:`stream`
    yields every account's pages, tagged. :attr:`outcomes` holds each account's result once it is done.
    """

    def __init__(
        self,
        accounts: Sequence[AccountConfig],
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        concurrency: int = 64,
        rate: float | None = None,
        burst: int = 10,
        page_size: int = 100,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 30.0,
        verify_tls: bool = True,
        retry: RetryPolicy = DEFAULT_RETRY,
        limiters: Mapping[str, Limiter] | None = None,
        hooks: Hooks | None = None,
        transport: Callable[[AccountConfig], Transport] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.accounts = tuple(accounts)
        self.max_in_flight = max_in_flight
        self.concurrency = concurrency
        self.rate = rate
        self.burst = burst
        self.page_size = page_size
        self.api_version = api_version
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.retry = retry
        self.limiters = dict(limiters or {})
        self.hooks = hooks
        self._transport = transport
        self.outcomes: dict[str, AccountOutcome] = {account.name: AccountOutcome(account.name) for account in accounts}
        self._log = structlog.get_logger("snapcrawl")

    def crawler(self, account: AccountConfig, cap: anyio.Semaphore) -> Crawler:
        """The crawler of one account: its endpoint, keys, limiter and concurrency, under the fleet's ``cap``."""
        concurrency = account.concurrency or self.concurrency
        inner = (
            self._transport(account)
            if self._transport is not None
            else AiohttpTransport(connections=concurrency, timeout=self.timeout, verify_tls=self.verify_tls)
        )
        limiter = self.limiters.get(account.name)
        return Crawler(
            endpoint=account.endpoint,
            credentials=account.credentials,
            api_version=self.api_version,
            page_size=self.page_size,
            concurrency=concurrency,
            rate_limit=None if limiter is not None else account.rate or self.rate,
            burst=account.burst or self.burst,
            limiter=limiter,
            retry=self.retry,
            timeout=self.timeout,
            verify_tls=self.verify_tls,
            hooks=self.hooks,
            transport=_CappedTransport(inner, cap),
        )

    @staticmethod
    def volume_ids(account: AccountConfig) -> Iterator[str] | None:
        """The account's volumes (read lazily from its file), or ``None`` for the whole account."""
        return None if account.volumes is None else read_volume_ids(account.volumes)

    async def crawl_into(
        self,
        sink_for: Callable[[AccountConfig], Sink],
        *,
        name: str | None = None,
        sort: str | None = None,
        volume_ids_for: Callable[[AccountConfig], VolumeIds] | None = None,
    ) -> dict[str, AccountOutcome]:
        """Crawl every account at once, each into ``sink_for(account)`` (closed here); return every outcome.

        ``volume_ids_for`` gives an account's volume ids (by default :meth:`volume_ids`: its file, or the account);
        a distributed job gives each account's queue.
        """
        cap = anyio.Semaphore(self.max_in_flight)
        volumes = volume_ids_for or self.volume_ids

        async def one(account: AccountConfig) -> None:
            outcome = self.outcomes[account.name]
            sink: Sink | None = None
            try:
                with self._alone(outcome):
                    sink = sink_for(account)
                    async with self.crawler(account, cap) as crawler:
                        result = await crawler.crawl_into(
                            volumes(account), sink, name=name, sort=sort, stats=outcome.stats
                        )
                    outcome.failures = result.failures
                    outcome.finished = True
            finally:
                if sink is not None:
                    with anyio.CancelScope(shield=True):
                        try:
                            await sink.aclose()
                        except SnapcrawlError as exc:
                            self._failed(outcome, exc)

        async with anyio.create_task_group() as tg:
            for account in self.accounts:
                tg.start_soon(one, account)
        return self.outcomes

    @contextlib.asynccontextmanager
    async def stream(
        self, *, name: str | None = None, sort: str | None = None, buffer_pages: int = 64
    ) -> AsyncIterator[MemoryObjectReceiveStream[AccountPage]]:
        """``async with fleet.stream() as pages: async for tagged in pages: ...``: every account's pages, tagged.

        Leaving the block cancels what is still running; :attr:`outcomes` says how each account went.
        """
        cap = anyio.Semaphore(self.max_in_flight)
        send, receive = anyio.create_memory_object_stream[AccountPage](buffer_pages)

        async def one(account: AccountConfig, send: MemoryObjectSendStream[AccountPage]) -> None:
            outcome = self.outcomes[account.name]
            with send:
                try:
                    with self._alone(outcome):
                        async with (
                            self.crawler(account, cap) as crawler,
                            crawler.crawl(self.volume_ids(account), name=name, sort=sort) as pages,
                        ):
                            outcome.stats = pages.stats
                            async for page in pages.pages():
                                await send.send(AccountPage(account.name, page))
                            outcome.failures = list(pages.failures)
                        outcome.finished = True
                except anyio.BrokenResourceError:
                    return  # the consumer left

        async with anyio.create_task_group() as tg:
            with send:
                for account in self.accounts:
                    tg.start_soon(one, account, send.clone())
            try:
                with receive:
                    yield receive
            finally:
                tg.cancel_scope.cancel()

    @contextlib.contextmanager
    def _alone(self, outcome: AccountOutcome) -> Iterator[None]:
        """Whatever ends one account's crawl ends that account only: it becomes the account's error.

        A task that ended in an exception (or a cancellation nobody asked for) would cancel every other account
        of the fleet, which would then end neither finished nor failed. A cancellation of the fleet itself (the
        caller's, or a signal's) still goes through.
        """
        try:
            yield
        except SnapcrawlError as exc:
            self._failed(outcome, exc)
        except anyio.get_cancelled_exc_class():
            if anyio.current_effective_deadline() == -math.inf:
                raise  # the fleet is being cancelled: every account stops
            self._log.error("account.cancelled", account=outcome.name, exc_info=True)
            self._failed(outcome, SnapcrawlError("its crawl was cancelled from within, without a cause"))
        except anyio.BrokenResourceError:
            raise
        except Exception as exc:  # a defect: the traceback goes to the log, the account fails alone
            self._log.error("account.crashed", account=outcome.name, exc_info=True)
            self._failed(outcome, SnapcrawlError(f"unexpected {_describe(exc)}"))

    def _failed(self, outcome: AccountOutcome, error: SnapcrawlError) -> None:
        if outcome.error is None:
            outcome.error = error
        self._log.info("account.failed", account=outcome.name, error=str(error))  # the summary names it


def _describe(exc: BaseException) -> str:
    """``Type: message`` of an unexpected error: of the first one inside a task group's exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"
