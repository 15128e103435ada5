"""``walk(until=...)``: the walk stops before the first id ``until`` accepts, and fetches nothing past it.

The account listing walks its seams this way (with ``seen``); the contract holds without ``seen`` too.
"""

from __future__ import annotations

from contextlib import aclosing

import anyio

from snapcrawl import Page
from snapcrawl._stats import CrawlStats
from snapcrawl._walk import PageCursor, walk
from tests.living import LivingListing


async def _pages(listing: LivingListing, stop: str) -> list[Page]:
    pages: list[Page] = []
    walker = walk(listing.fetch, PageCursor(volume_id="v", page_size=5), CrawlStats(), until=lambda i: i == stop)
    async with aclosing(walker):
        async for page in walker:
            pages.append(page)
    return pages


def test_a_walk_ends_before_the_id_until_accepts() -> None:
    """Ids before ``stop`` are delivered once, ``stop`` and everything after it never; the last page says so."""
    listing = LivingListing(30)
    stop = listing.order[12]
    pages = anyio.run(_pages, listing, stop)
    assert [s.id for page in pages for s in page.snapshots] == listing.order[:12]
    assert [page.last for page in pages] == [False, False, True]
    assert listing.requests == 3  # the page holding ``stop`` is the last one asked for
