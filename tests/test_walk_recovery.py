"""The walk's contract at its edges: ``until``, how far back a lost marker steps, when it gives up, its count.

The account listing walks its seams with ``until`` (and ``seen``); the contract holds without ``seen`` too.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import pytest

from snapcrawl import BadRequestError, Page
from snapcrawl._models import SnapshotPage
from snapcrawl._stats import CrawlStats
from snapcrawl._walk import MAX_MARKER_FALLBACKS, MAX_RESTARTS, PageCursor, walk
from tests.living import LivingListing


async def _pages(fetch: Any, page_size: int, stats: CrawlStats | None = None, **options: Any) -> list[Page]:
    pages: list[Page] = []
    walker = walk(fetch, PageCursor(volume_id="v", page_size=page_size), stats or CrawlStats(), **options)
    async with aclosing(walker):
        async for page in walker:
            pages.append(page)
    return pages


def test_a_walk_ends_before_the_id_until_accepts() -> None:
    """Ids before ``stop`` are delivered once, ``stop`` and everything after it never; the last page says so."""
    listing = LivingListing(30)
    stop = listing.order[12]
    pages = anyio.run(lambda: _pages(listing.fetch, 5, until=lambda i: i == stop))
    assert [s.id for page in pages for s in page.snapshots] == listing.order[:12]
    assert [page.last for page in pages] == [False, False, True]
    assert listing.requests == 3  # the page holding ``stop`` is the last one asked for


def test_pages_of_one_step_back_as_far_as_pages_of_many() -> None:
    """With one id a page, the ids of the last pages still give every fallback: the 4th one back is tried."""
    listing = LivingListing(20)
    order = list(listing.order)
    lost = order[8 - MAX_MARKER_FALLBACKS : 8]  # the marker and the 3 ids listed just before it

    def delete_after_page_8(living: LivingListing, served: list[str]) -> None:
        if served == [order[7]]:
            for snapshot_id in lost:
                living.delete(snapshot_id)

    listing.churn = delete_after_page_8
    stats = CrawlStats()
    pages = anyio.run(lambda: _pages(listing.fetch, 1, stats))
    assert [s.id for page in pages for s in page.snapshots] == order
    assert listing.markers[8:13] == [order[7], order[6], order[5], order[4], order[3]]  # not a start-over
    assert stats.marker_recoveries == 1


def test_a_server_rejecting_every_marker_fails_the_walk_after_its_restarts() -> None:
    """Start-overs that bring nothing new stop after ``MAX_RESTARTS``: the 400 is raised, not looped on."""
    listing = LivingListing(30)

    async def fetch(query: str, **kwargs: Any) -> SnapshotPage:
        if "marker=" in query:
            await anyio.lowlevel.checkpoint()  # a request takes a moment, as a real one does
            listing.rejected_markers += 1
            raise BadRequestError("marker: not found", status=400, detail="marker not found", page=kwargs["page"])
        return await listing.fetch(query, **kwargs)

    async def crawl() -> None:
        with anyio.fail_after(10), pytest.raises(BadRequestError):
            await _pages(fetch, 5)

    anyio.run(crawl)
    # Every round: the first page again, its next marker and the earlier ids (all rejected); then one start-over.
    assert listing.markers.count(None) == MAX_RESTARTS + 1


def test_pages_of_many_step_back_to_the_4th_id_before_the_lost_marker() -> None:
    """With pages longer than the fallbacks, all 4 fallbacks come from the last page: the 4th is the 5th id from its
    end, not the last id of the page before (which would re-list a whole page for nothing)."""
    listing = LivingListing(30)
    order = list(listing.order)
    lost = order[20 - MAX_MARKER_FALLBACKS : 20]  # the marker and the 3 ids listed just before it

    def delete_after_page_2(living: LivingListing, served: list[str]) -> None:
        if served == order[10:20]:
            for snapshot_id in lost:
                living.delete(snapshot_id)

    listing.churn = delete_after_page_2
    stats = CrawlStats()
    pages = anyio.run(lambda: _pages(listing.fetch, 10, stats))
    assert [s.id for page in pages for s in page.snapshots] == order
    assert listing.markers[2:7] == [order[19], order[18], order[17], order[16], order[15]]
    assert stats.marker_recoveries == 1
