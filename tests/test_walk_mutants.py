"""Edges of the pagination state machine that mutation testing found untested (issue 24)."""

from __future__ import annotations

import datetime as dt

import pytest

from snapcrawl import CrawlStats, PaginationError, Snapshot
from snapcrawl._models import SnapshotPage
from snapcrawl._walk import MAX_STALLED_PAGES, PageCursor, note_repeats

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _page(ids: list[str], count: int | None = None) -> SnapshotPage:
    return SnapshotPage(snapshots=[Snapshot(id=i, volume_id="v", size=1, created_at=NOW) for i in ids], count=count)


def test_a_stalled_first_page_counts_once() -> None:
    """A resumed walk whose server caps pages at one and repeats the marker stalls from its very first page: it
    gets exactly MAX_STALLED_PAGES such pages before the loop is declared, not one fewer."""
    cursor = PageCursor(volume_id="v", page_size=1, marker="a", cap=1)
    for _ in range(MAX_STALLED_PAGES):
        assert cursor.advance(_page(["a"]))
        assert cursor.fresh == []
    with pytest.raises(PaginationError, match=f"{MAX_STALLED_PAGES + 1} full pages in a row"):
        cursor.advance(_page(["a"]))


def test_an_id_repeated_within_a_new_page_is_delivered_once() -> None:
    """A page whose ids are all new to the walk but repeat within the page delivers each once, counting the rest."""
    cursor = PageCursor(volume_id="v", page_size=3)
    assert cursor.advance(_page(["x", "y", "x"]))
    assert [s.id for s in cursor.fresh] == ["x", "y"]
    assert cursor.duplicates == 1 and cursor.seen == 2


def test_note_repeats_counts_dropped_duplicates_once() -> None:
    """What the cursor dropped reaches the stats, and the cursor's count is reset so it is not counted twice."""
    cursor = PageCursor(volume_id="v", page_size=3)
    cursor.advance(_page(["x", "y", "x"]))
    stats = CrawlStats()
    note_repeats(cursor, stats)
    assert stats.duplicates_dropped == 1 and cursor.duplicates == 0
    note_repeats(cursor, stats)
    assert stats.duplicates_dropped == 1
