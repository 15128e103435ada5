"""One crawl's run object: its settings, counts, failures and resume state, and the outcome of each listing.

A run owns nothing beyond itself: its caller (``crawl()``'s stream, or ``crawl_into()``) owns the task group it
runs in, so a cancelled or abandoned crawl leaves nothing behind. The facade picks the strategy that drives it
(:mod:`._volumes` or :mod:`._account`); both are built on the same few methods. Pages go to one ``deliver``
coroutine (a sink's ``write``, or the stream's send), where they are counted; a slow consumer slows the workers
instead of growing memory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import anyio

from ._errors import query_option
from ._events import Subscribers, VolumeDone, VolumeFailed, log_hooks
from ._exceptions import AuthError, BadRequestError, ConfigError, SinkError, SnapcrawlError, UnfitValueError, detach
from ._fetch import PageFetcher
from ._log import get_logger
from ._models import CrawlResult, Page, SnapshotPage, VolumeFailure
from ._stats import CrawlStats
from ._walk import Fetch, PageCursor, note_repeats, walk_into
from .sinks import Sink, VolumeProgress

__all__ = ["CrawlRun", "CrawlSettings", "Deliver", "ServerHints", "Strategy"]

#: Distinct volumes failing alike on their first page, with none succeeding, before the query is blamed.
SAME_FIRST_PAGE_400: Final = 3

Deliver = Callable[[Page], Awaitable[None]]
#: What drives a run: the volumes strategy (bound to its ids) or the account listing.
Strategy = Callable[["CrawlRun"], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CrawlSettings:
    """What a run needs to know of its crawler and of the caller's filters."""

    page_size: int
    concurrency: int
    name: str | None = None
    sort: str | None = None
    with_count: bool = True
    #: The crawler's monotonic clock: the run's stats are timed by it.
    clock: Callable[[], float] = time.monotonic


class ServerHints:
    """What one crawl learned about the server that the next walk can use: the page length it caps ``limit`` at."""

    __slots__ = ("page_cap",)

    def __init__(self) -> None:
        self.page_cap: int | None = None


class CrawlRun:
    """One crawl's counts, failures and resume state, and the fatal error that ended it (if any).

    Built complete by the facade; a strategy (:func:`._volumes.crawl_volumes`, :func:`._account.crawl_account`)
    drives it through :meth:`walk_listing`, :meth:`deliver` and the outcome methods (``done``, ``fail_listing``,
    ``rejected``, ``stop``).
    """

    def __init__(
        self,
        *,
        fetcher: PageFetcher,
        settings: CrawlSettings,
        deliver: Deliver,
        sink: Sink | None = None,
        events: Subscribers | None = None,
        hints: ServerHints | None = None,
        stats: CrawlStats | None = None,
        on_end: Callable[[CrawlStats], object] | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.settings = settings
        self._write = deliver
        self._hand_on = deliver if sink is None else self._deliver_fitting
        self.sink = sink
        self.events = events or Subscribers([log_hooks()])
        self.hints = hints or ServerHints()
        #: This crawl's counts (pass ``stats`` to watch them from outside while it runs).
        self.stats = stats if stats is not None else CrawlStats(clock=settings.clock)
        self.failures: list[VolumeFailure] = []
        self.fatal: SnapcrawlError | None = None
        self.progress: Mapping[str | None, VolumeProgress] = {}
        self.log = get_logger("crawl")
        self._seen: set[str] = set()
        self._first_page_400: dict[str, int] = {}
        self._succeeded = False
        self._cancel = anyio.CancelScope()
        #: Called with this crawl's stats when it ends (the crawler adds them to its totals).
        self._on_end = on_end

    @property
    def concurrency(self) -> int:
        """How many requests the crawl's strategy keeps going at once."""
        return self.settings.concurrency

    @property
    def fetch(self) -> Fetch:
        """How one page is fetched, with retries."""
        return self.fetcher.fetch

    @property
    def result(self) -> CrawlResult:
        """This crawl's stats and failures."""
        return CrawlResult(self.stats, self.failures)

    async def run(self, strategy: Strategy, *, scope: str) -> None:
        """Crawl by ``strategy`` (``scope`` names it in the log); errors end up in ``fatal``, never raised."""
        stats, settings = self.stats, self.settings
        stats.started_at = stats.clock()
        self.log.info("crawl.start", scope=scope, concurrency=settings.concurrency)
        try:
            with self._cancel:
                if self.sink is not None:
                    self.progress = await self.sink.load_progress()
                await strategy(self)
        except SnapcrawlError as exc:
            self.fatal = exc
        finally:
            stats.ended_at = stats.clock()
            self.log.info("crawl.end", failures=len(self.failures), **stats.as_dict())
            if self._on_end is not None:
                self._on_end(stats)

    def stop(self, error: SnapcrawlError) -> None:
        """Every other request would fail the same way: end the crawl now, reporting ``error``."""
        if self.fatal is None:
            self.fatal = error
            self.log.error("crawl.stopped", error=str(error))
        self._cancel.cancel()

    def fail(self, volume_id: str | None, error: SnapcrawlError, pages_done: int) -> None:
        """Record that the crawl gave up on a volume; the crawl goes on. The error is kept without its traceback,
        which would keep the failed answer alive until the crawl ends."""
        failure = VolumeFailure(volume_id, detach(error), pages_done)
        self.failures.append(failure)
        self.stats.volumes_failed += 1
        if listeners := self.events.volume_failed:
            self.events.emit(listeners, VolumeFailed(failure=failure))

    def done(self, volume_id: str | None, snapshots: int, *, cap: int | None = None) -> None:
        """Record that a listing completed; ``cap`` is the page length the server gave it, if it capped ``limit``."""
        if cap is not None:
            self.hints.page_cap = cap
        self._succeeded = True
        self.stats.volumes_done += 1
        if listeners := self.events.volume_done:
            self.events.emit(listeners, VolumeDone(volume_id=volume_id, snapshots=snapshots))

    def cursor(self, volume_id: str | None) -> PageCursor:
        """A fresh cursor for one listing, with what this crawler knows of the server's page cap."""
        settings = self.settings
        return PageCursor(
            volume_id=volume_id,
            page_size=settings.page_size,
            name=settings.name,
            sort=settings.sort,
            with_count=settings.with_count,
            cap=self.hints.page_cap,
        )

    async def walk_listing(self, volume_id: str | None, *, seen: set[str] | None = None) -> None:
        """Walk one listing by marker from where earlier runs left it, and record the outcome.

        Most volumes are one page: a listing walked from its start fetches page 1 here, in this frame (one
        coroutine fewer on every resume than through :func:`walk_into`), and is done when that page was its last.
        Only when more pages follow, or for a listing resumed mid-way, does the walk go on through
        :func:`walk_into`, with the same cursor and the same answer handling.
        """
        progress = self.progress
        state = progress.get(volume_id) if progress else None
        if state is not None and state.status == "done":
            self.stats.volumes_skipped += 1
            return
        cursor = self.cursor(volume_id)
        fallbacks: tuple[str, ...] = ()
        delivered_before = None
        if state is not None and state.markers:
            cursor.marker, fallbacks = state.markers[0], state.markers[1:]
        if state is not None and self.sink is not None:
            sink = self.sink

            async def delivered_before() -> set[str]:
                return await sink.delivered_ids(volume_id)

        stats = self.stats
        try:
            first: tuple[int, SnapshotPage, bool] | None = None
            count: int | None = None
            if cursor.marker is None and seen is None:
                answer = await self.fetcher.fetch(cursor.query(), volume_id=volume_id, page=1, stats=stats)
                if cursor.advance(answer):
                    first = (1, answer, True)
                else:  # the listing's only page
                    fresh = cursor.fresh
                    if cursor.duplicates:
                        note_repeats(cursor, stats)
                    await self.deliver(Page(volume_id, 1, fresh, True))
                    count = len(fresh)
            if count is None:
                count = await walk_into(
                    self.fetcher.fetch,
                    cursor,
                    stats,
                    self.deliver,
                    fallback_markers=fallbacks,
                    delivered_before=delivered_before,
                    seen=seen,
                    first=first,
                )
        except (AuthError, SinkError) as exc:  # a broken destination commits nothing more: stop, not fail
            self.stop(exc)
        except BadRequestError as exc:
            await self.rejected(volume_id, exc, cursor)
        except SnapcrawlError as exc:
            await self.fail_listing(volume_id, exc, cursor.page - 1)
        else:
            self.done(volume_id, count, cap=cursor.cap)

    def deliver(self, page: Page) -> Awaitable[None]:
        """Hand ``page`` on (to the sink, or the stream): the one place the crawl's snapshots are counted.

        Not a coroutine itself: it returns the destination's, so a page costs no extra coroutine frame. A volume's
        page goes straight to the destination: :meth:`_deliver_fitting` would only raise its error again.
        """
        self.stats.snapshots += len(page.snapshots)
        return self._hand_on(page) if page.volume_id is None else self._write(page)

    async def _deliver_fitting(self, page: Page) -> None:
        """Hand ``page`` to the sink. A value it cannot hold fails the volume (raised); in the account-wide listing,
        whose pages mix volumes, the snapshot's own volume is named failed and the rest of the page is stored."""
        while True:
            try:
                await self._write(page)
            except UnfitValueError as exc:
                if page.volume_id is not None:
                    raise
                self.fail(exc.volume_id, exc, 0)
                page = Page(None, page.number, [s for s in page.snapshots if s.id != exc.snapshot_id], page.last)
            else:
                return

    async def fail_listing(self, volume_id: str | None, error: SnapcrawlError, pages_done: int) -> None:
        """Record that the crawl gave up on a listing, in the sink too (whose failure stops the crawl)."""
        self.fail(volume_id, error, pages_done)
        if self.sink is not None:
            try:
                await self.sink.fail(volume_id, str(error))
            except SinkError as exc:
                self.stop(exc)

    async def rejected(self, volume_id: str | None, error: BadRequestError, cursor: PageCursor) -> None:
        """A 400: about this volume, or about the query every volume shares (then the crawl stops, exit 2)."""
        first_page = cursor.page == 1 and cursor.marker is None
        if first_page and (option := query_option(error, cursor.params())) is not None:
            value = {"sort": self.settings.sort, "name": self.settings.name}.get(option, self.settings.page_size)
            self.stop(
                ConfigError(f"the server rejected {{{option}}} {value!r}: {error.detail or error}", options=(option,))
            )
            return
        if first_page and not self._succeeded:
            detail = error.detail or str(error.status)
            same = self._first_page_400[detail] = self._first_page_400.get(detail, 0) + 1
            if same >= SAME_FIRST_PAGE_400:
                self.stop(ConfigError(f"the server rejects the query of every volume: {detail}"))
                return
        await self.fail_listing(volume_id, error, cursor.page - 1)
