"""The one page loop: walk a listing by marker, page after page, keeping the consistency contract.

The contract: every snapshot that exists for the whole walk is delivered exactly once; one created or deleted
during it at most once. What follows from it, and what this module does:

- The walk ends on an empty or a short page, never on ``count``: ``count`` is a hint for progress only, and goes
  stale the moment a snapshot is created or deleted.
- A short page is the end only if the server did not cap ``limit``: when ``count`` says more remain, the short
  length is taken as the server's cap and the walk goes on (pages of that length are then full).
- A "marker not found" 400 (the snapshot the walk stood on was deleted) is recovered from: the walk steps back to
  an earlier id it delivered that still exists, or starts over, and skips the ids it already delivered.
- Nothing the server sends can make a walk deliver an id twice or loop: an id delivered before is dropped
  wherever it comes back (a page that starts with the marker it was asked from is an *inclusive* marker, noted
  once); pages that bring nothing new are a broken cursor, and after ``MAX_STALLED_PAGES`` of them in a row the
  walk fails with :class:`PaginationError` naming the marker. After a lost-marker recovery the walk may re-list
  what it delivered (a start-over does): that many pages more are allowed before it counts as stalled.

:class:`PageCursor` is the pure part (no I/O, testable without an event loop); :func:`walk` drives it and
yields pages, so a volume's crawl, a seam of the account listing and ``list_snapshots`` all share one loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import Protocol

from ._exceptions import BadRequestError, PaginationError
from ._log import get_logger
from ._models import Page, Snapshot, SnapshotPage
from ._signing import encode_query, query_escape
from ._stats import CrawlStats
from ._text import shorten

__all__ = ["Fetch", "PageCursor", "Seen", "note_repeats", "walk", "walk_into"]

#: Earlier ids tried as a marker, newest first, before a walk whose marker was deleted starts over.
MAX_MARKER_FALLBACKS = 4
#: Start-overs in a row that deliver nothing new: more means the server rejects markers as such.
MAX_RESTARTS = 5
#: Full pages in a row with nothing new before a walk is declared looping (beyond a recovery's re-listing).
MAX_STALLED_PAGES = 3

_log = get_logger("walk")


class Seen(Protocol):
    """Ids already delivered: a ``set[str]`` will do."""

    def __contains__(self, snapshot_id: object, /) -> bool:
        """Whether ``snapshot_id`` was delivered."""
        ...

    def update(self, snapshot_ids: Iterable[str], /) -> None:
        """Note these ids as delivered."""
        ...


class Fetch(Protocol):
    """How the walk gets one page (:meth:`PageFetcher.fetch`)."""

    def __call__(self, query: str, *, volume_id: str | None, page: int, stats: CrawlStats) -> Awaitable[SnapshotPage]:
        """Fetch the page for an encoded ``query``."""
        ...


class PageCursor:
    """Where one listing (a volume, or the whole account) stands: the next query, and whether more pages follow.

    ``query()`` gives the next request's encoded query; ``advance(page)`` takes its answer and says whether
    another page should be fetched. ``cap`` is the page length the server actually gives, once it is known to
    be below ``page_size``.
    """

    __slots__ = (
        "_allowance",
        "_head",
        "_name",
        "_relisting",
        "_stalled",
        "_tail",
        "cap",
        "count",
        "delivered",
        "duplicates",
        "fresh",
        "inclusive",
        "marker",
        "name",
        "page",
        "page_size",
        "seen",
        "sort",
        "volume_id",
        "with_count",
    )

    def __init__(
        self,
        *,
        volume_id: str | None,
        page_size: int,
        name: str | None = None,
        sort: str | None = None,
        with_count: bool = True,
        marker: str | None = None,
        cap: int | None = None,
    ) -> None:
        self.volume_id = volume_id
        self.page_size = page_size
        self.marker = marker
        self.cap = cap
        self.page = 1
        self.seen = 0
        self.count: int | None = None
        #: Every id this walk delivered: what comes back is dropped, never delivered twice.
        self.delivered: set[str] = set()
        #: The snapshots of the last page that ``advance`` took, less those delivered before.
        self.fresh: list[Snapshot] = []
        #: Ids dropped as delivered before (the repeated first snapshot of an inclusive marker not counted).
        self.duplicates = 0
        #: Pages that started with the marker they were asked from: the server's marker is inclusive.
        self.inclusive = 0
        self._stalled = 0  # full pages in a row that brought nothing new
        self._allowance = MAX_STALLED_PAGES
        self._relisting = False  # after a recovery, until something new: ids seen again are expected, not counted
        self.name = name
        self.sort = sort
        self.with_count = with_count
        # The encoded query around the one parameter that changes: keys sort as limit, marker, name,
        # sort, volume_id, with_count, so a page's query is one join, not a sort and escape of everything.
        self._head = f"limit={page_size}"
        self._name = "" if name is None else f"&name={query_escape(name)}"
        sort_part = "" if sort is None else f"&sort={query_escape(sort)}"
        volume_part = "" if volume_id is None else f"&volume_id={query_escape(volume_id)}"
        self._tail = f"{sort_part}{volume_part}&with_count={'true' if with_count else 'false'}"

    def params(self) -> dict[str, str]:
        """The parameters of the next page."""
        params = {"limit": str(self.page_size), "with_count": "true" if self.with_count else "false"}
        for key, value in (("volume_id", self.volume_id), ("name", self.name), ("sort", self.sort)):
            if value is not None:
                params[key] = value
        if self.marker is not None:
            params["marker"] = self.marker
        return params

    def query(self) -> str:
        """The encoded query of the next page, exactly as ``encode_query(self.params())``."""
        marker = "" if self.marker is None else f"&marker={query_escape(self.marker)}"
        return f"{self._head}{marker}{self._name}{self._tail}"

    def offset_query(self, offset: int) -> str:
        """The encoded query of the page at ``offset``, with no marker (for the account-wide fan-out)."""
        params = self.params()
        params.pop("marker", None)
        if offset:
            params["offset"] = str(offset)
        return encode_query(params)

    def restart(self, marker: str | None) -> None:
        """Go on after ``marker`` (``None``: from the start) instead of the current marker.

        What follows may re-list what the walk delivered: that many pages are not counted as stalled.
        """
        self.marker = marker
        length = self.cap or self.page_size
        self._stalled = 0
        self._allowance = -(-len(self.delivered) // length) + MAX_STALLED_PAGES
        self._relisting = True

    def advance(self, page: SnapshotPage) -> bool:
        """Account for ``page`` (its new snapshots go to ``fresh``); return whether another page should be fetched.

        Raises :class:`PaginationError` when too many full pages in a row brought nothing new.
        """
        snapshots = page.snapshots
        if page.count is not None:
            self.count = page.count
        if not snapshots:
            self.fresh = snapshots
            return False
        length = len(snapshots)
        marker = self.marker
        if marker is not None and snapshots[0].id == marker:
            # The snapshot the walk stands on, again first: the server's marker is inclusive, not a broken cursor.
            self.inclusive += 1
            snapshots = snapshots[1:]
        delivered = self.delivered
        ids = [s.id for s in snapshots]
        if delivered.isdisjoint(ids):  # the usual case, in two set operations
            size = len(delivered)
            delivered.update(ids)
            fresh = snapshots if len(delivered) - size == len(ids) else self._drop_repeats(snapshots, set())
        else:
            fresh = self._drop_repeats(snapshots, delivered)
        self.fresh = fresh
        self.marker = page.snapshots[-1].id
        self.seen += len(fresh)
        self.page += 1
        full = length >= (self.cap or self.page_size)
        if full and length == 1 and page.snapshots[0].id == marker:
            # A page of one that holds only its inclusive marker can never move on: ask for two from now on.
            self.page_size = 2
            self._head = "limit=2"
        if fresh:
            self._stalled, self._allowance, self._relisting = 0, MAX_STALLED_PAGES, False
        elif full:
            self._stalled += 1
            if self._stalled > self._allowance:
                after = "the first page" if marker is None else f"marker {shorten(marker)}"
                raise PaginationError(
                    f"the server's cursor loops: {self._stalled} full pages in a row after {after} brought no "
                    "snapshot not delivered before; stopping instead of looping",
                    volume_id=self.volume_id,
                    page=self.page - 1,
                )
        if full:
            return True
        if fresh and ((self.count is not None and self.seen < self.count) or (self.count is None and self.cap is None)):
            # Short, yet more may follow: either the server caps ``limit`` (count says so, or no count tells us
            # otherwise) -- pages of this length are full from now on. One extra request at worst.
            self.cap = length
            return True
        return False

    def _drop_repeats(self, snapshots: list[Snapshot], delivered: set[str]) -> list[Snapshot]:
        """The snapshots of a page whose ids are not in ``delivered`` (which gains them), each id once."""
        fresh: list[Snapshot] = []
        for snapshot in snapshots:
            if snapshot.id in delivered:
                self.duplicates += not self._relisting
            else:
                delivered.add(snapshot.id)
                fresh.append(snapshot)
        return fresh


async def walk(
    fetch: Fetch,
    cursor: PageCursor,
    stats: CrawlStats,
    *,
    fallback_markers: Iterable[str] = (),
    delivered_before: Callable[[], Awaitable[set[str]]] | None = None,
    seen: Seen | None = None,
    until: Callable[[str], bool] | None = None,
    first: tuple[int, SnapshotPage, bool] | None = None,
) -> AsyncGenerator[Page, None]:
    """Fetch the pages of ``cursor`` in order and yield each as a :class:`Page` (use it with ``aclosing``).

    Every page with snapshots is yielded, and the last page always (empty or not, ``last`` set), so that a
    writer can record the listing as complete. ``fallback_markers`` are earlier ids to resume after, newest
    first, should the cursor's marker have been deleted; ``delivered_before`` returns the ids an earlier run
    already delivered, for a walk that has to start over. With ``seen`` (the account-wide listing), ids in it are
    never yielded and yielded ids are added to it; the cursor drops ids the walk itself delivered either way.
    The walk also ends, before it, at the first snapshot whose id ``until`` accepts.
    ``first`` is a page the caller (:meth:`CrawlRun.walk_listing`) already fetched and advanced the cursor past:
    (its number, it, whether more follow).
    """
    volume_id = cursor.volume_id
    lost = _LostMarker(cursor, stats, fallback_markers, delivered_before)
    more = True
    try:
        while more:
            if first is not None:
                (number, page, more), first = first, None
            else:
                number = cursor.page
                try:
                    page = await fetch(cursor.query(), volume_id=volume_id, page=number, stats=stats)
                except BadRequestError:
                    if cursor.marker is None or not await lost.step_back():
                        raise  # not about a marker: the query itself, or the volume, is rejected
                    continue
                lost.candidates = None
                more = cursor.advance(page)
            if page.snapshots:
                lost.listed(page.snapshots)
            snapshots = cursor.fresh
            if until is not None or seen is not None:
                snapshots, reached = _trim(snapshots, until, seen)
                more = more and not reached
            if snapshots:
                lost.delivered()
            if snapshots or not more:
                yield Page(volume_id, number, snapshots, not more)
    finally:
        note_repeats(cursor, stats)


async def walk_into(
    fetch: Fetch,
    cursor: PageCursor,
    stats: CrawlStats,
    deliver: Callable[[Page], Awaitable[None]],
    *,
    fallback_markers: Iterable[str] = (),
    delivered_before: Callable[[], Awaitable[set[str]]] | None = None,
    seen: Seen | None = None,
    first: tuple[int, SnapshotPage, bool] | None = None,
) -> int:
    """Walk ``cursor``'s listing as :func:`walk` does, handing each page to ``deliver``; return how many snapshots
    it delivered. ``first`` is as for :func:`walk`: a page the caller already fetched and advanced the cursor past
    (:meth:`CrawlRun.walk_listing` fetches page 1 itself, as most volumes end there).
    """
    count = 0
    pages = walk(
        fetch,
        cursor,
        stats,
        fallback_markers=fallback_markers,
        delivered_before=delivered_before,
        seen=seen,
        first=first,
    )
    async with aclosing(pages):
        async for page in pages:
            count += len(page.snapshots)
            await deliver(page)
    return count


def note_repeats(cursor: PageCursor, stats: CrawlStats) -> None:
    """Count what ``cursor`` dropped in ``stats``; the crawl's first inclusive marker is worth one warning."""
    if cursor.duplicates:
        stats.duplicates_dropped += cursor.duplicates
        _log.warning(
            "walk.duplicates_dropped", volume_id=cursor.volume_id, duplicates=cursor.duplicates, why="broken cursor"
        )
        cursor.duplicates = 0
    if cursor.inclusive:
        if not stats.inclusive_markers:
            _log.warning(
                "walk.inclusive_marker",
                volume_id=cursor.volume_id,
                why="the server repeats the marker's snapshot first on each page; it is dropped (warned once)",
            )
        stats.inclusive_markers += cursor.inclusive
        cursor.inclusive = 0


class _LostMarker:
    """What a walk keeps to recover when the snapshot it stands on is deleted (the server's "marker not found").

    It steps back to the last ids the server listed, newest first, then to earlier runs' ``fallbacks``; after a
    few, it starts over from the first page. Either way, what was delivered is skipped from then on (the cursor
    drops every id it delivered; an earlier run's are added to those on a start-over).
    """

    __slots__ = (
        "_cursor",
        "_delivered_before",
        "_fallbacks",
        "_listed",
        "_stalls",
        "_stats",
        "candidates",
    )

    def __init__(
        self,
        cursor: PageCursor,
        stats: CrawlStats,
        fallbacks: Iterable[str],
        delivered_before: Callable[[], Awaitable[set[str]]] | None,
    ) -> None:
        self._cursor = cursor
        self._stats = stats
        self._fallbacks = list(fallbacks)
        self._delivered_before = delivered_before
        self._listed: list[list[Snapshot]] = []  # the last pages the server listed
        self._stalls = 0  # start-overs since the walk last delivered anything new
        self.candidates: list[str] | None = None  # while recovering: earlier ids still to try

    def listed(self, snapshots: list[Snapshot]) -> None:
        self._listed.append(snapshots)
        del self._listed[: -MAX_MARKER_FALLBACKS - 1]

    def delivered(self) -> None:
        self._stalls = 0

    async def step_back(self) -> bool:
        """Move the cursor to where the walk can go on; ``False`` if starting over has stopped helping."""
        cursor = self._cursor
        if self._stalls >= MAX_RESTARTS:
            return False
        if self.candidates is None:
            self._stats.marker_recoveries += 1
            earlier = [c for c in (*reversed(_last_ids(self._listed)), *self._fallbacks) if c != cursor.marker]
            self.candidates, self._fallbacks = earlier[:MAX_MARKER_FALLBACKS], []
        if self.candidates:
            cursor.restart(self.candidates.pop(0))
            return True
        if self._delivered_before is not None:
            cursor.delivered.update(await self._delivered_before())
            self._delivered_before = None
        self._stalls += 1
        cursor.restart(None)
        return True


def _last_ids(pages: list[list[Snapshot]]) -> list[str]:
    """The last ids the server listed, oldest first: of each page its last few, after the last few before it.

    Worked out only when a marker is lost, not on every page. Every page adds at least one id, so the last
    ``MAX_MARKER_FALLBACKS + 1`` pages give the same ids as all of them would.
    """
    recent: list[str] = []
    for snapshots in pages:
        recent = [*recent[-MAX_MARKER_FALLBACKS:], *(s.id for s in snapshots[-MAX_MARKER_FALLBACKS - 1 :])]
    return recent


def _trim(
    snapshots: list[Snapshot], until: Callable[[str], bool] | None, skip: Seen | None
) -> tuple[list[Snapshot], bool]:
    """The snapshots before the first that ``until`` accepts, less those in ``skip``; and whether one did."""
    reached = False
    if until is not None:
        for index, snapshot in enumerate(snapshots):
            if until(snapshot.id):
                snapshots, reached = snapshots[:index], True
                break
    if skip is not None and snapshots:
        snapshots = [s for s in snapshots if s.id not in skip]
        skip.update(s.id for s in snapshots)
    return snapshots, reached
