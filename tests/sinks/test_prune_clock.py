"""Prune with a clock that stands still or steps back: rows seen again survive, only unseen rows go.

With the real clock a row's ``crawled_at`` always lands after the crawl's start, so a prune that deletes
``crawled_at <= start`` instead of ``< start`` would pass unnoticed; a clock whose next reading equals (or is
before) the start is exactly the case where it deletes the rows the crawl has just seen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from snapcrawl._models import Page

from .conftest import Inventory, page, snapshots

START = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
YESTERDAY = START - dt.timedelta(days=1)
SETTINGS = {"endpoint": "https://scp.example", "name": None, "sort": None}


def _standing_still() -> Callable[[], dt.datetime]:
    """Every reading is the crawl's start."""
    return lambda: START


def _stepping_back() -> Callable[[], dt.datetime]:
    """The first reading (the crawl's start) and then five minutes earlier, ever after (NTP stepped the clock)."""
    readings: Iterator[dt.datetime] = iter([START])
    return lambda: next(readings, START - dt.timedelta(minutes=5))


async def _crawl(inventory: Inventory, now: Callable[[], dt.datetime], *pages: Page, prune: bool) -> int:
    """One complete crawl of ``pages`` at the clock ``now``; the rows it pruned."""
    sink = inventory.sink(settings=SETTINGS, prune=prune, now=now)
    await sink.load_progress()
    for each in pages:
        await sink.write(each)
    await sink.complete()
    await sink.aclose()
    return sink.pruned


@pytest.mark.parametrize("clock", [_standing_still, _stepping_back])
async def test_pruning_volumes_keeps_what_this_crawl_saw(
    inventory: Inventory, clock: Callable[[], Callable[[], dt.datetime]]
) -> None:
    """v1 lost two snapshots since yesterday, v2 none: exactly v1's two go, and every row is stamped no earlier
    than the start."""
    yesterday = (page("v1", 1, snapshots("v1", 5), last=True), page("v2", 1, snapshots("v2", 3), last=True))
    await _crawl(inventory, lambda: YESTERDAY, *yesterday, prune=False)

    today = (page("v1", 1, snapshots("v1", 3), last=True), page("v2", 1, snapshots("v2", 3), last=True))
    assert await _crawl(inventory, clock(), *today, prune=True) == 2

    assert await inventory.ids() == ["v1-s0", "v1-s1", "v1-s2", "v2-s0", "v2-s1", "v2-s2"]
    stamps = {_utc(row[0]) for row in await inventory.query("SELECT crawled_at FROM snapshots")}
    assert stamps == {START}


@pytest.mark.parametrize("clock", [_standing_still, _stepping_back])
async def test_pruning_the_account_keeps_what_this_crawl_saw(
    inventory: Inventory, clock: Callable[[], Callable[[], dt.datetime]]
) -> None:
    """The account-wide listing prunes the whole table: only the snapshots it did not list go."""
    await _crawl(inventory, lambda: YESTERDAY, page(None, 1, snapshots("v1", 4), last=True), prune=False)

    today = (page(None, 1, snapshots("v1", 2)), page(None, 2, [], last=True))
    assert await _crawl(inventory, clock(), *today, prune=True) == 2

    assert await inventory.ids() == ["v1-s0", "v1-s1"]


def _utc(value: object) -> dt.datetime:
    """A stored ``crawled_at`` (SQLite text or PostgreSQL timestamptz) as an aware datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.astimezone(dt.UTC)


async def test_without_prune_rows_not_seen_again_stay(inventory: Inventory) -> None:
    """A sink opened with the defaults never prunes: a completed volume keeps the rows this crawl did not list."""
    for listed, when in ((5, YESTERDAY), (3, START)):
        sink = inventory.sink(settings=SETTINGS, now=lambda when=when: when)
        await sink.load_progress()
        await sink.write(page("v1", 1, snapshots("v1", listed), last=True))
        await sink.complete()
        await sink.aclose()
        assert sink.pruned == 0
    assert await inventory.ids() == [f"v1-s{n}" for n in range(5)]
