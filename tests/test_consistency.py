"""The consistency contract against a listing that changes under the walk, for every way snapcrawl lists.

Every snapshot that exists for the whole crawl is delivered exactly once; one created or deleted meanwhile at
most once; nothing that never existed. Checked for a volume's walk, the account-wide fan-out, resumed walks and
servers that cap ``limit``, over many generated histories.
"""

from __future__ import annotations

from collections import Counter
from contextlib import aclosing
from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapcrawl import Page
from snapcrawl._account import crawl_account
from snapcrawl._fetch import PageFetcher
from snapcrawl._run import CrawlRun, CrawlSettings
from snapcrawl._stats import CrawlStats
from snapcrawl._walk import PageCursor, walk
from tests.living import LivingListing, hostile_churn

HISTORIES = settings(max_examples=150, deadline=None)


def _check(listing: LivingListing, delivered: list[str]) -> None:
    counts = Counter(delivered)
    assert not [i for i, n in counts.items() if n > 1], "a snapshot was delivered twice"
    assert listing.throughout() <= counts.keys(), "a snapshot that existed throughout was missed"
    assert counts.keys() <= listing.ever, "a snapshot that never existed was delivered"


async def _walk(listing: LivingListing, cursor: PageCursor, **options: Any) -> tuple[list[str], list[Page]]:
    pages: list[Page] = []
    walker = walk(listing.fetch, cursor, CrawlStats(), **options)
    async with aclosing(walker):
        async for page in walker:
            pages.append(page)
    return [s.id for page in pages for s in page.snapshots], pages


@HISTORIES
@given(
    size=st.integers(0, 60),
    page_size=st.integers(1, 12),
    cap=st.one_of(st.none(), st.integers(1, 12)),
    rate=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 10**6),
)
def test_volume_walk_keeps_the_contract(size: int, page_size: int, cap: int | None, rate: float, seed: int) -> None:
    """A volume's walk delivers every snapshot that existed throughout exactly once, whatever churns."""
    listing = LivingListing(size, cap=cap, churn=hostile_churn(rate), seed=seed)
    delivered, pages = anyio.run(_walk, listing, PageCursor(volume_id="v", page_size=page_size))
    _check(listing, delivered)
    assert pages and pages[-1].last and not any(page.last for page in pages[:-1])


@HISTORIES
@given(
    size=st.integers(0, 80),
    page_size=st.integers(1, 12),
    cap=st.one_of(st.none(), st.integers(1, 12)),
    rate=st.sampled_from([0.0, 0.3, 1.0]),
    concurrency=st.integers(1, 6),
    seed=st.integers(0, 10**6),
)
def test_account_fan_out_keeps_the_contract(
    size: int, page_size: int, cap: int | None, rate: float, concurrency: int, seed: int
) -> None:
    """The account-wide listing, fetched concurrently by offset, loses and repeats nothing while data moves."""
    listing = LivingListing(size, cap=cap, churn=hostile_churn(rate), seed=seed)
    pages: list[Page] = []

    async def deliver(page: Page) -> None:
        pages.append(page)

    async def crawl() -> CrawlRun:
        fetcher = cast(PageFetcher, type("F", (), {"fetch": staticmethod(listing.fetch)})())
        run = CrawlRun(
            fetcher=fetcher, settings=CrawlSettings(page_size=page_size, concurrency=concurrency), deliver=deliver
        )
        await crawl_account(run)
        return run

    run = anyio.run(crawl)
    assert run.fatal is None and not run.failures
    _check(listing, [s.id for page in pages for s in page.snapshots])
    assert pages[-1].last and not any(page.last for page in pages[:-1])
    assert run.stats.snapshots == sum(len(page.snapshots) for page in pages)


def test_account_fan_out_costs_one_overlap_per_page_when_nothing_moves() -> None:
    """On a still listing the fan-out asks for each page once (pages overlap by one), plus the empty end."""
    listing = LivingListing(1000)
    pages: list[Page] = []

    async def deliver(page: Page) -> None:
        pages.append(page)

    async def crawl() -> None:
        fetcher = cast(PageFetcher, type("F", (), {"fetch": staticmethod(listing.fetch)})())
        run = CrawlRun(fetcher=fetcher, settings=CrawlSettings(page_size=100, concurrency=8), deliver=deliver)
        await crawl_account(run)

    anyio.run(crawl)
    _check(listing, [s.id for page in pages for s in page.snapshots])
    # 1000 snapshots in pages of 100 starting every 99: 11 pages, the last one short, and no seam to walk.
    assert listing.requests == 11


@pytest.mark.parametrize("deleted", [1, 2, 3, 4, 5])
def test_resumed_walk_whose_markers_were_deleted(deleted: int) -> None:
    """A resumed volume whose recorded marker (and fallbacks) were deleted neither fails nor repeats a snapshot.

    It steps back to the newest recorded id that still exists, trying each in turn; with none left, it starts over.
    """
    listing = LivingListing(30)
    already = listing.order[:10]  # an earlier run delivered these; its last page was already[5:10]
    markers = tuple(reversed(already[5:10]))
    for snapshot_id in markers[:deleted]:
        listing.delete(snapshot_id)

    async def delivered_before() -> set[str]:
        return set(already)

    cursor = PageCursor(volume_id="v", page_size=4, marker=markers[0])
    delivered, _ = anyio.run(
        lambda: _walk(listing, cursor, fallback_markers=markers[1:], delivered_before=delivered_before)
    )
    _check(listing, [*already, *delivered])
    assert listing.rejected_markers == deleted
    stepped_back_to = markers[deleted] if deleted < len(markers) else None
    assert listing.markers[: deleted + 1] == [*markers[:deleted], stepped_back_to]


def test_lost_marker_steps_back_instead_of_starting_over() -> None:
    """When the marker is deleted, the walk goes on after an earlier id, not from the first page."""
    listing = LivingListing(40)
    victim: list[str] = []
    first_page = listing.order[:10]

    def delete_next_marker_once(living: LivingListing, served: list[str]) -> None:
        if served and not victim and len(served) == 10:
            victim.append(served[-1])
            living.delete(served[-1])

    listing.churn = delete_next_marker_once
    delivered, _ = anyio.run(_walk, listing, PageCursor(volume_id="v", page_size=10))
    _check(listing, delivered)
    assert listing.rejected_markers == 1
    assert listing.requests == 1 + 1 + 4  # first page, the rejected one, then the rest from the step back
    # It stepped back to the id listed just before the lost one, and went on from there.
    assert victim == [first_page[-1]]
    assert listing.markers[:3] == [None, first_page[-1], first_page[-2]]
