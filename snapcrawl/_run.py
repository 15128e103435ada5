"""One crawl: workers over volume ids, each volume walked by marker; its own stats, failures and resume.

A run owns nothing beyond itself: its caller (``crawl()``'s stream, or ``crawl_into()``) owns the task group it
runs in, so a cancelled or abandoned crawl leaves nothing behind. Pages go to one ``deliver`` coroutine (a sink's
``write``, or the stream's send); a slow consumer slows the workers instead of growing memory.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from contextlib import aclosing
from typing import Final

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._errors import query_option
from ._events import Subscribers, VolumeDone, VolumeFailed, log_hooks
from ._exceptions import AuthError, BadRequestError, ConfigError, SinkError, SnapcrawlError, UnfitValueError, detach
from ._fetch import PageFetcher
from ._models import Page, SnapshotPage, VolumeFailure
from ._stats import CrawlStats
from ._text import has_controls, printable, shorten
from ._walk import PageCursor, note_repeats, walk
from .sinks import Sink, VolumeProgress

__all__ = ["MAX_VOLUME_ID_LENGTH", "CrawlResult", "CrawlRun", "CrawlSettings", "VolumeFailure", "check_volume_id"]

#: Longer ids are rejected as invalid rather than sent (real ids are 36-character UUIDs).
MAX_VOLUME_ID_LENGTH: Final = 255
#: Ids pulled at a time from a synchronous iterable, in a worker thread (it may block: a pipe, a slow generator).
ID_BATCH: Final = 256
#: Distinct volumes failing alike on their first page, with none succeeding, before the query is blamed.
SAME_FIRST_PAGE_400: Final = 3

Deliver = Callable[[Page], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlResult:
    """What one finished crawl did: its own counts and its own failures."""

    stats: CrawlStats
    failures: list[VolumeFailure]


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
    """One crawl's workers, counts and failures, and the fatal error that ended it (if any)."""

    def __init__(
        self,
        *,
        fetcher: PageFetcher,
        settings: CrawlSettings,
        deliver: Deliver,
        sink: Sink | None = None,
        events: Subscribers | None = None,
        hints: ServerHints | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.settings = settings
        self._write = deliver
        self.deliver = deliver if sink is None else self._deliver_fitting
        self.sink = sink
        self.events = events or Subscribers([log_hooks()])
        self.hints = hints or ServerHints()
        self.stats = CrawlStats(clock=settings.clock)
        self.failures: list[VolumeFailure] = []
        self.fatal: SnapcrawlError | None = None
        self.progress: Mapping[str | None, VolumeProgress] = {}
        self.log = structlog.get_logger("snapcrawl")
        self._seen: set[str] = set()
        self._first_page_400: dict[str, int] = {}
        self._succeeded = False
        self._cancel = anyio.CancelScope()
        #: Called with this crawl's stats when it ends (the crawler adds them to its totals).
        self.on_end: Callable[[CrawlStats], object] | None = None

    @property
    def result(self) -> CrawlResult:
        """This crawl's stats and failures."""
        return CrawlResult(self.stats, self.failures)

    async def run(self, volume_ids: Iterable[object] | AsyncIterable[object] | None) -> None:
        """Crawl every volume (or the account, for ``None``); errors end up in ``fatal``, never raised."""
        stats, settings = self.stats, self.settings
        stats.started_at = stats.clock()
        self.log.info(
            "crawl.start", scope="account" if volume_ids is None else "volumes", concurrency=settings.concurrency
        )
        try:
            with self._cancel:
                if self.sink is not None:
                    self.progress = await self.sink.load_progress()
                if volume_ids is None:
                    from ._account import crawl_account  # noqa: PLC0415 - the strategy imports this module

                    await crawl_account(self)
                else:
                    await self._crawl_volumes(volume_ids)
        except SnapcrawlError as exc:
            self.fatal = exc
        finally:
            stats.ended_at = stats.clock()
            self.log.info("crawl.end", failures=len(self.failures), **stats.as_dict())
            if self.on_end is not None:
                self.on_end(stats)

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

    def done(self, volume_id: str | None, snapshots: int) -> None:
        """Record that a listing completed."""
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
        """Walk one listing by marker from where earlier runs left it, and record the outcome."""
        state = self.progress.get(volume_id)
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

        try:
            count = await self._walk(cursor, fallbacks, delivered_before, seen)
        except (AuthError, SinkError) as exc:  # a broken destination commits nothing more: stop, not fail
            self.stop(exc)
        except BadRequestError as exc:
            await self.rejected(volume_id, exc, cursor)
        except SnapcrawlError as exc:
            await self.fail_listing(volume_id, exc, cursor.page - 1)
        else:
            if cursor.cap is not None:
                self.hints.page_cap = cursor.cap
            self.done(volume_id, count)

    async def _walk(
        self,
        cursor: PageCursor,
        fallbacks: tuple[str, ...],
        delivered_before: Callable[[], Awaitable[set[str]]] | None,
        seen: set[str] | None,
    ) -> int:
        """Deliver the listing's pages; return how many snapshots it had.

        Most volumes fit in one page: that page is fetched and delivered here, and only a listing with more
        pages (or one resumed mid-way) goes through :func:`walk`'s generator, which costs a little per volume.
        """
        stats, deliver, volume_id = self.stats, self.deliver, cursor.volume_id
        first: tuple[int, SnapshotPage, bool] | None = None
        if cursor.marker is None and seen is None:
            answer = await self.fetcher.fetch(cursor.query(), volume_id=volume_id, page=1, stats=stats)
            more = cursor.advance(answer)
            if not more:
                fresh = cursor.fresh
                if cursor.duplicates:
                    note_repeats(cursor, stats)
                stats.snapshots += len(fresh)
                await deliver(Page(volume_id, 1, fresh, True))
                return len(fresh)
            first = (1, answer, more)
        count = 0
        pages = walk(
            self.fetcher.fetch,
            cursor,
            stats,
            fallback_markers=fallbacks,
            delivered_before=delivered_before,
            seen=seen,
            first=first,
        )
        async with aclosing(pages):
            async for page in pages:
                count += len(page.snapshots)
                stats.snapshots += len(page.snapshots)
                await deliver(page)
        return count

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

    async def _crawl_volumes(self, volume_ids: Iterable[object] | AsyncIterable[object]) -> None:
        check_volume_ids(volume_ids)
        with contextlib.ExitStack() as streams:  # closed however the crawl ends
            async with anyio.create_task_group() as tg:
                ids: Iterator[object] | _Feed
                if isinstance(volume_ids, AsyncIterable):
                    ids = streams.enter_context(self._feed(tg, self._from_async(volume_ids)))
                elif isinstance(volume_ids, Collection):  # in memory: workers share the iterator, no feeder task
                    ids = self._unique(iter(volume_ids))
                else:  # may block (a pipe, a slow generator): pulled in batches in a worker thread
                    ids = streams.enter_context(self._feed(tg, self._from_thread(iter(volume_ids))))
                for _ in range(self.settings.concurrency):
                    tg.start_soon(self._worker, ids)

    def _first_time(self, volume_id: object) -> bool:
        """Whether this id is new to the crawl (then it is counted); duplicates are crawled once."""
        key = volume_id if isinstance(volume_id, str) else repr(volume_id)
        if key in self._seen:
            return False
        self._seen.add(key)
        self.stats.volumes_seen += 1
        return True

    def _unique(self, volume_ids: Iterator[object]) -> Iterator[object]:
        return (volume_id for volume_id in volume_ids if self._first_time(volume_id))

    @staticmethod
    async def _from_async(volume_ids: AsyncIterable[object]) -> AsyncIterator[list[object]]:
        async for volume_id in volume_ids:
            yield [volume_id]

    @staticmethod
    async def _from_thread(volume_ids: Iterator[object]) -> AsyncIterator[list[object]]:
        while batch := await anyio.to_thread.run_sync(lambda: list(itertools.islice(volume_ids, ID_BATCH))):
            yield batch

    def _feed(self, tg: TaskGroup, batches: AsyncIterator[list[object]]) -> _Feed:
        # Unbuffered: the feeder pulls the next batch only once a worker has taken the previous one.
        send, receive = anyio.create_memory_object_stream[list[object]](0)

        async def feed() -> None:
            async with send:
                async for batch in batches:
                    if fresh := [volume_id for volume_id in batch if self._first_time(volume_id)]:
                        await send.send(fresh)

        tg.start_soon(feed)
        return _Feed(receive)

    async def _worker(self, ids: Iterator[object] | _Feed) -> None:
        """Crawl volumes one after another, each page after page."""
        shared = ids if isinstance(ids, Iterator) else None
        feed = ids if isinstance(ids, _Feed) else None
        while True:
            if shared is not None:
                volume_id = next(shared, _END)
            else:
                assert feed is not None  # noqa: S101 - one of the two is set
                volume_id = await feed.next()
            if volume_id is _END:
                return
            if (problem := check_volume_id(volume_id)) is not None:
                await self.fail_listing(failure_key(volume_id), problem, 0)
                continue
            assert isinstance(volume_id, str)  # noqa: S101 - checked just above
            await self.walk_listing(volume_id)


_END: Final = object()


class _Feed:
    """The receiving end of a feeder task: the next id, or ``_END``.

    Ids arrive a batch at a time into a buffer the workers share, so a worker takes the next id without a trip
    through the event loop; when the buffer is empty, one worker waits for the next batch and the others wait
    for it (two stream checkpoints per id cost about a fifth of the crawl's CPU when each volume is one page).
    """

    __slots__ = ("_ended", "_ready", "_receive", "_refill")

    def __init__(self, receive: MemoryObjectReceiveStream[list[object]]) -> None:
        self._receive = receive
        self._ready: collections.deque[object] = collections.deque()
        self._refill = anyio.Lock(fast_acquire=True)
        self._ended = False

    def __enter__(self) -> _Feed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._receive.close()

    async def next(self) -> object:
        ready = self._ready
        while not ready:
            if self._ended:
                return _END
            async with self._refill:
                if ready or self._ended:
                    continue  # another worker refilled the buffer (or saw the end) meanwhile
                try:
                    ready.extend(await self._receive.receive())
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    self._ended = True
        return ready.popleft()


def check_volume_ids(volume_ids: object) -> None:
    """Refuse a single string where an iterable of ids belongs: iterating it would crawl one volume per character."""
    if isinstance(volume_ids, str | bytes):
        raise ConfigError("volume_ids must be an iterable of volume ids, not a single string")


def check_volume_id(volume_id: object) -> ConfigError | None:
    """Why ``volume_id`` cannot be sent, or ``None`` when it can (checked before any request)."""
    if not isinstance(volume_id, str):
        return ConfigError(
            f"invalid volume id {shorten(repr(volume_id))}: it must be a string, not {type(volume_id).__name__}"
        )
    if not volume_id.strip():
        return ConfigError(f"invalid volume id {volume_id!r}: it must be a non-empty string")
    if len(volume_id) > MAX_VOLUME_ID_LENGTH:
        return ConfigError(f"invalid volume id {shorten(volume_id, 40)}: more than {MAX_VOLUME_ID_LENGTH} characters")
    if has_controls(volume_id):
        return ConfigError(f"invalid volume id {shorten(volume_id)}: it holds control characters")
    return None


def failure_key(volume_id: object) -> str:
    """What an invalid volume id is recorded as: bounded and printable, so a checkpoint can always hold it."""
    text = volume_id if isinstance(volume_id, str) else repr(volume_id)
    if len(text) <= MAX_VOLUME_ID_LENGTH and not has_controls(text):
        return text
    cut = printable(text[:64])
    return cut if len(text) <= 64 else f"{cut}... ({len(text)} characters)"
