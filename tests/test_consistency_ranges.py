"""The account-wide fan-out into a database, killed at any page and resumed from its ranges, keeps the contract.

A model of the database: every page the crawl delivered up to the kill is committed in order (a prefix of them,
as batches commit in order), and its range progress is folded the way the sinks fold it. The rerun gets those
ranges and the committed ids, as a database gives them, while the listing goes on changing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import cast

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from snapcrawl import Page
from snapcrawl._account import crawl_account
from snapcrawl._fetch import PageFetcher
from snapcrawl._ranges import RangePage, RangeProgress, RangeStep
from snapcrawl._run import CrawlRun, CrawlSettings
from snapcrawl.sinks import VolumeProgress
from tests.living import LivingListing, hostile_churn


class _KilledError(Exception):
    """The process died here."""


class _Database:
    """What a database sink keeps of the account listing: the committed ids and each range's folded progress."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.ranges: dict[int, RangeProgress] = {}

    def commit(self, pages: list[Page]) -> None:
        steps: dict[int, RangeStep] = {}
        for page in pages:
            self.ids.extend(s.id for s in page.snapshots)
            if isinstance(page, RangePage):
                steps.setdefault(page.range, RangeStep()).add(page)
        for index, step in steps.items():
            self.ranges[index] = step.progress(self.ranges.get(index))


class _ResumingSink:
    """The sink side the account crawl reads on a rerun: ``ranges`` and the ids already committed."""

    resumable = True

    def __init__(self, database: _Database) -> None:
        self.ranges = dict(database.ranges)
        self._ids = set(database.ids)

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return set(self._ids)


def _run(listing: LivingListing, page_size: int, concurrency: int, deliver: object, sink: object = None) -> CrawlRun:
    fetcher = cast(PageFetcher, type("F", (), {"fetch": staticmethod(listing.fetch)})())
    return CrawlRun(
        fetcher=fetcher,
        settings=CrawlSettings(page_size=page_size, concurrency=concurrency),
        deliver=deliver,  # type: ignore[arg-type]
        sink=sink,  # type: ignore[arg-type]
    )


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 80),
    page_size=st.integers(2, 12),
    rate=st.sampled_from([0.0, 0.3, 1.0]),
    concurrency=st.integers(1, 6),
    kill_after=st.integers(1, 12),
    lost=st.integers(0, 3),
    seed=st.integers(0, 10**6),
)
def test_killed_and_resumed_fan_out_keeps_the_contract(
    size: int, page_size: int, rate: float, concurrency: int, kill_after: int, lost: int, seed: int
) -> None:
    listing = LivingListing(size, churn=hostile_churn(rate), seed=seed)
    database = _Database()
    delivered: list[Page] = []

    async def first_run() -> None:
        async def deliver(page: Page) -> None:
            if len(delivered) >= kill_after:
                raise _KilledError
            delivered.append(page)

        run = _run(listing, page_size, concurrency, deliver, sink=_ResumingSink(_Database()))
        run.progress = {}
        try:
            await crawl_account(run)
        except* _KilledError:
            pass

    anyio.run(first_run)
    database.commit(delivered[: max(len(delivered) - lost, 0)])  # the last batches may not have committed

    resumed: list[Page] = []

    async def rerun() -> CrawlRun:
        async def deliver(page: Page) -> None:
            resumed.append(page)

        run = _run(listing, page_size, concurrency, deliver, sink=_ResumingSink(database))
        progress: Mapping[str | None, VolumeProgress] = {None: VolumeProgress("partial")} if database.ids else {}
        run.progress = progress
        await crawl_account(run)
        return run

    run = anyio.run(rerun)
    assert run.fatal is None and not run.failures
    counts = Counter([*database.ids, *(s.id for page in resumed for s in page.snapshots)])
    assert not [i for i, n in counts.items() if n > 1], "a snapshot was delivered twice"
    assert listing.throughout() <= counts.keys(), "a snapshot that existed throughout was missed"
    assert counts.keys() <= listing.ever, "a snapshot that never existed was delivered"
    assert resumed[-1].last  # the listing completed: a pruning sink may prune now
