"""The account-wide listing: pages fetched concurrently by offset, then every seam between them checked.

Offsets are fixed from a ``count`` taken at the start, and offsets shift whenever a snapshot is created or
deleted, so offset pages alone can skip snapshots. Each page therefore overlaps the one before it by one
snapshot (pages of ``L`` snapshots start every ``L - 1``): where page ``k + 1`` starts with page ``k``'s last id,
nothing existing throughout can lie between them. Where a seam does not match (data moved, a page failed, the
server caps ``limit``), a marker walk from page ``k``'s last id repairs it, up to the first id that a later page
delivered. The last page is followed by a marker walk when it was full. Ids already delivered are dropped, so
each snapshot appears once: the consistency contract of :mod:`._walk` holds at the cost of one overlapping
snapshot per page, plus a short walk per seam that moved.

A database destination (a sink with ``ranges``) commits each fan-out page, and each seam walk's pages, as
the progress of a *range* (:mod:`._ranges`). A rerun fetches the first page again, fans out over the pages no
range covers yet, and checks every seam as above, old ranges and new alike; it walks only the seams not known to
join, and skips those already repaired: it fetches what is missing, concurrently. Another destination that
resumes (JSON Lines with a state file) gets one walk by marker instead, whose position it can record.
"""

from __future__ import annotations

import math
from contextlib import aclosing
from typing import TYPE_CHECKING, Protocol

import anyio

from ._exceptions import AuthError, BadRequestError, SnapcrawlError
from ._log import get_logger
from ._models import Page, Snapshot
from ._ranges import RangePage, RangeProgress
from ._tasks import check_none_dropped
from ._walk import MAX_MARKER_FALLBACKS, Fetch, PageCursor, walk

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Iterator, Mapping

    from ._stats import CrawlStats
    from .sinks import Sink, VolumeProgress

__all__ = ["AccountRun", "crawl_account"]

_log = get_logger("crawl")


class AccountRun(Protocol):
    """What the account listing needs of the run it drives (:class:`snapcrawl._run.CrawlRun` is one)."""

    @property
    def sink(self) -> Sink | None:
        """The destination, asked for its ranges and what earlier runs delivered."""
        ...

    @property
    def progress(self) -> Mapping[str | None, VolumeProgress]:
        """What earlier runs recorded, by listing (``None``: the account's)."""
        ...

    @property
    def stats(self) -> CrawlStats:
        """The crawl's counts."""
        ...

    @property
    def concurrency(self) -> int:
        """How many pages to fetch at once."""
        ...

    @property
    def fetch(self) -> Fetch:
        """How one page is fetched."""
        ...

    def cursor(self, volume_id: str | None) -> PageCursor:
        """A fresh cursor for a listing."""
        ...

    def deliver(self, page: Page) -> Awaitable[None]:
        """Hand a page on (and count it)."""
        ...

    async def walk_listing(self, volume_id: str | None, *, seen: set[str] | None = None) -> None:
        """Walk a listing by marker, from where earlier runs left it."""
        ...

    async def rejected(self, volume_id: str | None, error: BadRequestError, cursor: PageCursor) -> None:
        """Record a 400 on the listing (or stop the crawl, when the query is to blame)."""
        ...

    async def fail_listing(self, volume_id: str | None, error: SnapcrawlError, pages_done: int) -> None:
        """Record that the listing failed."""
        ...

    def done(self, volume_id: str | None, snapshots: int, *, cap: int | None = None) -> None:
        """Record that the listing completed."""
        ...

    def stop(self, error: SnapcrawlError) -> None:
        """End the crawl, reporting ``error``."""
        ...


class _Owners:
    """Which fan-out page delivered each id: shared by every walk of one account crawl (a :class:`Seen`)."""

    __slots__ = ("index", "page_of")

    def __init__(self, page_of: dict[str, int], index: int) -> None:
        self.page_of = page_of
        self.index = index

    def __contains__(self, snapshot_id: object) -> bool:
        return snapshot_id in self.page_of

    def update(self, snapshot_ids: Iterable[str]) -> None:
        page_of, index = self.page_of, self.index
        for snapshot_id in snapshot_ids:
            page_of.setdefault(snapshot_id, index)


async def crawl_account(run: AccountRun) -> None:
    """List every snapshot of the account once, whatever changes meanwhile."""
    sink = run.sink
    ranges: dict[int, RangeProgress] | None = getattr(sink, "ranges", None) if sink is not None else None
    state = run.progress.get(None)
    by_marker = ranges is None or (state is not None and not ranges)  # no ranges kept (or none from that run)
    if by_marker and (state is not None or (sink is not None and getattr(sink, "resumable", False))):
        await run.walk_listing(None, seen=set())
        return
    if state is not None and state.status == "done":
        run.stats.volumes_skipped += 1
        return
    crawl = _AccountCrawl(run, ranged=ranges is not None)
    if ranges:
        assert sink is not None  # noqa: S101 - ranges come from a sink
        crawl.resume(ranges, await sink.delivered_ids(None))
    try:
        await crawl.crawl()
    except* AuthError as group:
        first = group.exceptions[0]
        assert isinstance(first, AuthError)  # noqa: S101 - except* matched AuthError alone
        run.stop(first)


class _AccountCrawl:
    """One fan-out over the account's pages, and the repair of its seams."""

    def __init__(self, run: AccountRun, *, ranged: bool = False) -> None:
        self.run = run
        self.page_of: dict[str, int] = {}  # every id delivered -> the fan-out page (or seam) that delivered it
        self.firsts: dict[int, str] = {}  # fan-out page -> its first id, as fetched
        self.tails: dict[int, list[str]] = {}  # fan-out page -> its last ids, newest first
        self.full: dict[int, bool] = {}
        self.length = run.cursor(None).page_size  # the page length the server gives
        self.ranged = ranged  # whether pages go out as :class:`RangePage`, for the sink's range checkpoint
        self.closed: set[int] = set()  # ranges whose seam an earlier run repaired
        self.number = 0  # page numbers of seam walks (after every fan-out page's)

    def resume(self, ranges: dict[int, RangeProgress], committed: set[str]) -> None:
        """Start from what an earlier run committed: its ranges, and every id it delivered (skipped from now on)."""
        page_of = self.page_of
        page_of.update(dict.fromkeys(committed, -1))  # delivered, but where in the listing is unknown
        for index, state in ranges.items():
            tails = list(state.markers[: MAX_MARKER_FALLBACKS + 1]) or ([state.first] if state.first else [])
            if state.first is None or not tails:
                continue
            self.firsts[index], self.tails[index], self.full[index] = state.first, tails, state.full
            for snapshot_id in (state.first, *tails):
                page_of[snapshot_id] = index
            if state.closed:
                self.closed.add(index)
        _log.info("account.resume", ranges=len(ranges), closed=len(self.closed), committed=len(committed))

    async def deliver(self, index: int, snapshots: list[Snapshot]) -> None:
        """Note fan-out page ``index``, and hand on those of its snapshots no page delivered yet."""
        if snapshots:
            self.firsts[index] = snapshots[0].id
            self.tails[index] = [s.id for s in snapshots[: -MAX_MARKER_FALLBACKS - 2 : -1]]
            self.full[index] = len(snapshots) >= self.length
        page_of = self.page_of
        fresh = [s for s in snapshots if s.id not in page_of]
        for snapshot in fresh:
            page_of[snapshot.id] = index
        if self.ranged and snapshots:  # the range is recorded even when every id in it was delivered before
            first, full, tail = snapshots[0].id, self.full[index], tuple(self.tails[index])
            page = RangePage(None, index + 1, fresh, last=False, range=index, first=first, full=full, tail=tail)
            await self.run.deliver(page)
        elif fresh:
            await self.run.deliver(Page(None, index + 1, fresh, last=False))

    async def crawl(self) -> None:
        run = self.run
        stats = run.stats
        cursor = run.cursor(None)
        try:
            first = await run.fetch(cursor.query(), volume_id=None, page=1, stats=stats)
            more = cursor.advance(first)
        except BadRequestError as exc:
            await run.rejected(None, exc, cursor)
            return
        except AuthError:
            raise
        except SnapcrawlError as exc:
            await run.fail_listing(None, exc, 0)
            return
        stats.snapshots_expected = first.count
        self.length = cursor.cap or cursor.page_size
        await self.deliver(0, first.snapshots)
        pages = 0
        if more and first.count is not None and self.length >= 2:
            step = self.length - 1
            pages = math.ceil(max(first.count - self.length, 0) / step)
            missing = [index for index in range(1, pages + 1) if index not in self.firsts]  # a rerun's gaps
            indexes = iter(missing)
            async with anyio.create_task_group() as tg:
                for _ in range(min(run.concurrency, len(missing))):
                    tg.start_soon(self._fetch_pages, cursor, indexes, step)
            check_none_dropped(tg, "a fan-out page fetcher")
        pages = max([pages, *self.firsts])
        self.number = pages + 1  # the last fan-out page's number: seam walks and the closing page come after it
        if more and (error := await self._repair()) is not None:
            await run.fail_listing(None, error, len(self.firsts))
            return
        await run.deliver(Page(None, self.number + 1, [], last=True))
        run.done(None, len(self.page_of), cap=cursor.cap)

    async def _fetch_pages(self, cursor: PageCursor, indexes: Iterator[int], step: int) -> None:
        run = self.run
        for index in indexes:
            query = cursor.offset_query(index * step)
            try:
                page = await run.fetch(query, volume_id=None, page=index + 1, stats=run.stats)
            except AuthError:
                raise
            except SnapcrawlError as exc:
                # The seam before it is repaired by a marker walk: a gap to fill, not a loss.
                _log.info("account.page_failed", page=index + 1, error=str(exc))
                continue
            await self.deliver(index, page.snapshots)

    def seams(self) -> list[int]:
        """The full pages not followed by a page that starts with their last id."""
        fetched = sorted(self.firsts)
        seams = []
        for position, index in enumerate(fetched):
            if not self.full[index] or index in self.closed:
                continue  # a short page: when it was fetched, the listing ended there (or repaired before)
            following = fetched[position + 1] if position + 1 < len(fetched) else None
            if following is None or self.firsts[following] != self.tails[index][0]:
                seams.append(index)
        return seams

    async def _repair(self) -> SnapcrawlError | None:
        """Walk every seam that did not match; return the error if one could not be repaired."""
        failures: list[SnapcrawlError] = []

        async def repair(index: int) -> None:
            try:
                await self._walk_seam(index)
            except AuthError:
                raise
            except SnapcrawlError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for index in self.seams():
                tg.start_soon(repair, index)
        check_none_dropped(tg, "a seam repair")
        return failures[0] if failures else None

    async def _walk_seam(self, index: int) -> None:
        """From page ``index``'s last id, by marker, up to the first id a later page delivered (or the end)."""
        run = self.run
        _log.debug("account.seam", page=index + 1)
        cursor = run.cursor(None)
        marker, *earlier = self.tails[index]
        cursor.marker = marker
        cursor.page = index + 2
        page_of = self.page_of
        pages = walk(
            run.fetch,
            cursor,
            run.stats,
            fallback_markers=earlier,  # should its last id have been deleted since
            seen=_Owners(page_of, index),
            until=lambda snapshot_id: page_of.get(snapshot_id, -1) > index,
        )
        async with aclosing(pages):
            async for page in pages:
                if page.snapshots:  # the seam's end is not the listing's: never ``last``
                    await run.deliver(self._seam_page(index, page.snapshots))
        if self.ranged:
            await run.deliver(self._seam_page(index, [], closed=True))

    def _seam_page(self, index: int, snapshots: list[Snapshot], *, closed: bool = False) -> Page:
        """A page of the seam after fan-out page ``index``: with a database, it moves that range on."""
        self.number += 1
        if self.ranged:
            return RangePage(None, self.number, snapshots, last=False, range=index, closed=closed)
        return Page(None, self.number, snapshots, last=False)
