"""The pure pagination state machine."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapcrawl import PaginationError, Snapshot
from snapcrawl._models import SnapshotPage
from snapcrawl._walk import MAX_STALLED_PAGES, PageCursor
from snapcrawl.signing import encode_query

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _page(ids: list[str], count: int | None = None) -> SnapshotPage:
    return SnapshotPage(snapshots=[Snapshot(id=i, volume_id="v", size=1, created_at=NOW) for i in ids], count=count)


def test_first_params() -> None:
    """The first page asks for the page size, the volume, the filters and the count."""
    cursor = PageCursor(volume_id="v", page_size=50, name="n", sort="name:asc")
    assert cursor.params() == {"limit": "50", "with_count": "true", "volume_id": "v", "name": "n", "sort": "name:asc"}


def test_marker_paging_follows_last_id() -> None:
    """Marker paging sends the previous page's last id."""
    cursor = PageCursor(volume_id="v", page_size=2)
    assert cursor.advance(_page(["a", "b"], count=5))
    assert cursor.params()["marker"] == "b" and cursor.page == 2
    assert cursor.advance(_page(["c", "d"], count=5))
    assert not cursor.advance(_page(["e"], count=5))
    assert cursor.seen == 5


def test_offset_query_drops_the_marker() -> None:
    """The account fan-out's query for a page at an offset carries the offset and no marker."""
    cursor = PageCursor(volume_id=None, page_size=2, with_count=False)
    assert "offset" not in cursor.params() and cursor.params()["with_count"] == "false"
    assert cursor.advance(_page(["a", "b"]))
    assert cursor.offset_query(4) == "limit=2&offset=4&with_count=false"
    assert cursor.offset_query(0) == "limit=2&with_count=false"


def test_stops_on_empty_page() -> None:
    """An empty page ends the listing."""
    assert not PageCursor(volume_id="v", page_size=2).advance(_page([], count=0))


def test_short_page_ends_the_walk() -> None:
    """A page shorter than asked for, with nothing more counted, ends the listing."""
    assert not PageCursor(volume_id="v", page_size=3).advance(_page(["a", "b"], count=2))


def test_short_page_with_more_counted_is_the_server_cap() -> None:
    """A server that caps pages below our page size must not make us stop early: pages of its length are full."""
    cursor = PageCursor(volume_id="v", page_size=3)
    assert cursor.advance(_page(["a", "b"], count=5)) and cursor.cap == 2
    assert cursor.advance(_page(["c", "d"], count=5))
    assert not cursor.advance(_page(["e"], count=5))


def test_short_page_without_count_is_confirmed_once() -> None:
    """Without a count a short page may be the server's cap: one more page tells, and a shorter one ends it."""
    cursor = PageCursor(volume_id="v", page_size=3, with_count=False)
    assert cursor.advance(_page(["a", "b"])) and cursor.cap == 2
    assert not cursor.advance(_page(["c"]))


def test_full_page_goes_on_even_when_count_is_reached() -> None:
    """``count`` is only a hint: snapshots deleted after they were listed make it stale, so a full page goes on."""
    cursor = PageCursor(volume_id="v", page_size=2)
    assert cursor.advance(_page(["a", "b"], count=2))
    assert not cursor.advance(_page([], count=2))


def test_repeated_page_is_dropped_then_raises_naming_the_marker() -> None:
    """The same full page again and again brings nothing new: dropped, then after a few a PaginationError."""
    cursor = PageCursor(volume_id="v", page_size=2)
    cursor.advance(_page(["a", "b"], count=9))
    for _ in range(MAX_STALLED_PAGES):
        assert cursor.advance(_page(["a", "b"], count=9))
        assert cursor.fresh == []
    with pytest.raises(PaginationError, match=r"cursor loops.*marker 'b'") as info:
        cursor.advance(_page(["a", "b"], count=9))
    assert (info.value.volume_id, info.value.page) == ("v", 2 + MAX_STALLED_PAGES)


def test_marker_cycle_never_delivers_twice_and_ends() -> None:
    """Pages A, B, A, B...: each id once, then the walk fails instead of looping."""
    cursor = PageCursor(volume_id="v", page_size=2)
    delivered: list[str] = []

    def cycle() -> None:
        for _ in range(100):
            for ids in (["a", "b"], ["c", "d"]):
                cursor.advance(_page(ids))
                delivered.extend(s.id for s in cursor.fresh)

    with pytest.raises(PaginationError):
        cycle()
    assert delivered == ["a", "b", "c", "d"]
    assert cursor.duplicates == 2 * (MAX_STALLED_PAGES + 1)


def test_partial_repeats_are_dropped_and_the_walk_goes_on() -> None:
    """A page mixing old and new ids is progress: the old ones are dropped, the stall count starts over."""
    cursor = PageCursor(volume_id="v", page_size=3)
    cursor.advance(_page(["a", "b", "c"]))
    for ids in (["b", "d", "d"], ["a", "c", "e"]):
        assert cursor.advance(_page(ids))
    assert [s.id for s in cursor.fresh] == ["e"]
    assert cursor.delivered == {"a", "b", "c", "d", "e"}
    assert not cursor.advance(_page(["f"], count=6))


def test_inclusive_marker_drops_the_repeated_first_snapshot() -> None:
    """A server whose pages start with the marker: that snapshot is dropped and noted, the walk is complete."""
    cursor = PageCursor(volume_id="v", page_size=3)
    pages = [["a", "b", "c"], ["c", "d", "e"], ["e", "f", "g"], ["g", "h"], ["h"]]
    delivered: list[str] = []
    for ids in pages:
        more = cursor.advance(_page(ids))
        delivered += [s.id for s in cursor.fresh]
    assert not more
    assert delivered == list("abcdefgh")
    assert (cursor.inclusive, cursor.duplicates) == (4, 0)


@pytest.mark.parametrize("page_size", [1, 2, 3])
def test_inclusive_marker_completes_at_any_page_size(page_size: int) -> None:
    """An inclusive server, walked with pages of one: a page holding only the marker is no progress, so the cursor
    asks for one more snapshot per page from then on, and the walk completes instead of failing as a loop."""
    ids = list("abcdefg")
    cursor = PageCursor(volume_id="v", page_size=page_size)
    delivered: list[str] = []
    more = True
    for _ in range(30):
        params = cursor.params()
        start = ids.index(params["marker"]) if "marker" in params else 0  # the marker's own snapshot first
        more = cursor.advance(_page(ids[start : start + int(params["limit"])], count=len(ids)))
        delivered += [s.id for s in cursor.fresh]
        if not more:
            break
    assert not more
    assert delivered == ids
    assert cursor.duplicates == 0


def test_a_page_ending_on_its_marker_is_no_progress() -> None:
    """A full page of ids already delivered, ending on the marker it was asked from, counts as stalled."""
    cursor = PageCursor(volume_id="v", page_size=2)
    cursor.advance(_page(["a", "b"], count=9))
    assert cursor.advance(_page(["c", "b"], count=9))
    assert [s.id for s in cursor.fresh] == ["c"]
    for _ in range(MAX_STALLED_PAGES):
        cursor.advance(_page(["a", "b"], count=9))
    with pytest.raises(PaginationError):
        cursor.advance(_page(["c", "b"], count=9))


def test_a_restart_may_relist_what_was_delivered() -> None:
    """After a lost marker the walk starts over: re-listing every delivered page is not a loop, and not counted."""
    cursor = PageCursor(volume_id="v", page_size=2)
    for ids in (["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"]):
        cursor.advance(_page(ids))
    cursor.restart(None)
    for ids in (["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"]):
        assert cursor.advance(_page(ids))
    assert cursor.advance(_page(["k", "l"]))
    assert cursor.duplicates == 0
    assert not cursor.advance(_page([]))


@given(
    volume_id=st.one_of(st.none(), st.text(min_size=1)),
    name=st.one_of(st.none(), st.text()),
    sort=st.one_of(st.none(), st.sampled_from(["name:asc", "created_at:desc"])),
    with_count=st.booleans(),
    marker=st.one_of(st.none(), st.text(min_size=1)),
    offset=st.integers(min_value=0, max_value=10**6),
)
def test_query_is_the_encoded_params(
    volume_id: str | None,
    name: str | None,
    sort: str | None,
    with_count: bool,
    marker: str | None,
    offset: int,
) -> None:
    """The fast per-page query is byte for byte the Go-style encoding of the parameters."""
    cursor = PageCursor(
        volume_id=volume_id, page_size=100, name=name, sort=sort, with_count=with_count, marker=marker
    )  # fmt: skip
    assert cursor.query() == encode_query(cursor.params())
    fan_out = {key: value for key, value in cursor.params().items() if key != "marker"}
    assert cursor.offset_query(offset) == encode_query(fan_out | ({"offset": str(offset)} if offset else {}))
