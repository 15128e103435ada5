"""The account-wide listing: the order a resumable sink needs, and where its closing page stands."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import anyio

from snapcrawl import AuthError, BadRequestError, ConfigError, Page, ServerError, SnapcrawlError
from snapcrawl._account import crawl_account
from snapcrawl._fetch import PageFetcher
from snapcrawl._models import SnapshotPage
from snapcrawl._run import CrawlRun, CrawlSettings
from snapcrawl._stats import CrawlStats
from snapcrawl.sinks import Sink
from tests.living import LivingListing


def _crawl(listing: LivingListing, *, resumable: bool, asked: list[int] | None = None) -> list[Page]:
    """Crawl the account; ``asked`` gets the page number each request names (as errors and hooks show it)."""
    pages: list[Page] = []

    async def fetch(query: str, *, volume_id: str | None, page: int, stats: CrawlStats) -> SnapshotPage:
        if asked is not None:
            asked.append(page)
        return await listing.fetch(query, volume_id=volume_id, page=page, stats=stats)

    async def deliver(page: Page) -> None:
        pages.append(page)

    async def crawl() -> None:
        fetcher = cast(PageFetcher, SimpleNamespace(fetch=fetch))
        sink = cast(Sink, SimpleNamespace(resumable=True)) if resumable else None
        run = CrawlRun(
            fetcher=fetcher, settings=CrawlSettings(page_size=100, concurrency=4), deliver=deliver, sink=sink
        )
        await crawl_account(run)
        assert run.fatal is None and not run.failures

    anyio.run(crawl)
    return pages


def test_a_resumable_sink_gets_the_account_walked_by_marker_in_order() -> None:
    """Its checkpoint is a marker, so pages come in listing order, each after the last one's id: no offsets."""
    listing = LivingListing(450)
    pages = _crawl(listing, resumable=True)
    assert [s.id for page in pages for s in page.snapshots] == listing.order
    assert [page.number for page in pages] == [1, 2, 3, 4, 5]
    assert listing.markers == [None, *(listing.order[n - 1] for n in (100, 200, 300, 400))]


def test_the_fan_out_closes_with_a_page_numbered_after_every_other() -> None:
    """Fetched by offset, pages are numbered from 1, and the last (empty) one comes after every other."""
    listing = LivingListing(1000)
    asked: list[int] = []
    pages = _crawl(listing, resumable=False, asked=asked)
    assert sorted(asked) == list(range(1, 12))  # 1-based: the first request is page 1, as errors name it
    assert pages[-1].last and pages[-1].snapshots == []
    assert pages[-1].number > max(page.number for page in pages[:-1])
    assert sorted(s.id for page in pages for s in page.snapshots) == sorted(listing.order)


def test_a_one_page_account_closes_with_page_2() -> None:
    """Without a fan-out, the closing (empty) page still comes after page 1, by number too."""
    listing = LivingListing(40)
    pages = _crawl(listing, resumable=False)
    assert [(page.number, len(page.snapshots), page.last) for page in pages] == [(1, 40, False), (2, 0, True)]


def _crawl_failing(listing: LivingListing, error: SnapcrawlError, *, when: str, sort: str | None = None) -> CrawlRun:
    """Crawl the account with ``error`` raised for the first page (``when="first"``) or every marker request."""

    async def fetch(query: str, *, volume_id: str | None, page: int, stats: CrawlStats) -> SnapshotPage:
        if (when == "first" and page == 1) or (when == "marker" and "marker=" in query):
            await anyio.lowlevel.checkpoint()
            raise error
        return await listing.fetch(query, volume_id=volume_id, page=page, stats=stats)

    async def crawl() -> CrawlRun:
        fetcher = cast(PageFetcher, SimpleNamespace(fetch=fetch))

        async def deliver(page: Page) -> None:
            pass

        settings = CrawlSettings(page_size=100, concurrency=4, sort=sort)
        run = CrawlRun(fetcher=fetcher, settings=settings, deliver=deliver)
        await crawl_account(run)
        return run

    return anyio.run(crawl)


def test_a_first_page_that_fails_is_a_failed_listing_with_no_page_done() -> None:
    """A 5xx on page 1: the account's listing fails, having delivered nothing."""
    run = _crawl_failing(LivingListing(300), ServerError("server error (HTTP 500)", status=500), when="first")
    assert run.fatal is None
    assert [(f.volume_id, f.pages_done) for f in run.failures] == [(None, 0)]


def test_a_rejected_sort_stops_the_crawl_naming_the_option() -> None:
    """A 400 about the query on page 1 is the user's option, not the listing: the crawl stops naming the sort."""
    error = BadRequestError("request rejected", status=400, detail="sort: unknown key 'sizee'")
    run = _crawl_failing(LivingListing(300), error, when="first", sort="sizee:asc")
    assert isinstance(run.fatal, ConfigError)
    assert "rejected sort 'sizee:asc'" in str(run.fatal)
    assert run.failures == []


def test_credentials_refused_while_repairing_a_seam_stop_the_crawl() -> None:
    """An AuthError in a seam's marker walk stops the crawl with it; it is not one failed listing among others."""
    listing = LivingListing(1000)
    deleted: list[str] = []

    def delete_one_after_the_first_page(living: LivingListing, served: list[str]) -> None:
        if not deleted:  # the pages fetched by offset after this one shift by one: a seam to repair
            deleted.append(living.order[0])
            living.delete(living.order[0])

    listing.churn = delete_one_after_the_first_page
    error = AuthError("credentials rejected (HTTP 401)", status=401)
    run = _crawl_failing(listing, error, when="marker")
    assert isinstance(run.fatal, AuthError)
    assert run.failures == []
