"""SQLite and PostgreSQL inventories alike: typed upserts, checked tables, prune, resume, locking, backpressure."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from snapcrawl import BusyError, SinkError, Snapshot
from snapcrawl.sinks import PostgresSink, SqliteSink, VolumeProgress, sqlite_path

from .conftest import Inventory, page, snapshots

SETTINGS = {"endpoint": "http://127.0.0.1:1", "name": None, "sort": None}


async def _crawl(sink: SqliteSink | PostgresSink, *pages_: object, complete: bool = True) -> None:
    """One run: open, write the pages, complete (or just flush), close."""
    await sink.load_progress()
    for item in pages_:
        await sink.write(item)  # type: ignore[arg-type]
    if complete:
        await sink.complete()
    await sink.aclose()


async def test_rows_are_typed_and_upserted_once(inventory: Inventory) -> None:
    """Each API field has its own typed column; a second crawl updates rows and never duplicates one."""
    first = snapshots("v1", 3)
    await _crawl(inventory.sink(settings=SETTINGS), page("v1", 1, first[:2]), page("v1", 2, first[2:], last=True))
    await _crawl(inventory.sink(settings=SETTINGS), page("v1", 1, snapshots("v1", 3, size=10), last=True))
    assert await inventory.ids() == ["v1-s0", "v1-s1", "v1-s2"]
    if inventory.kind == "sqlite":
        typed = await inventory.query(
            "SELECT typeof(size), json_extract(metadata, '$.n'), created_at, crawled_at >= created_at "
            "FROM snapshots WHERE id = 'v1-s2'"
        )
        assert typed == [("integer", 2, "2024-01-01T00:02:00.000000+00:00", 1)]
    else:
        types = dict(
            await inventory.query(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'snapshots'"
            )
        )
        assert types["size"] == "bigint"
        assert types["created_at"] == types["crawled_at"] == "timestamp with time zone"
        assert types["metadata"] == "jsonb"
        assert await inventory.query("SELECT (metadata->>'n')::int FROM snapshots WHERE id = 'v1-s2'") == [(2,)]
    assert await inventory.query("SELECT size FROM snapshots WHERE id = 'v1-s2'") == [(20,)]


async def test_a_table_that_does_not_fit_is_an_error(inventory: Inventory) -> None:
    """An existing table with other columns is reported column by column, and left as it was."""
    await inventory.query("CREATE TABLE snapshots (id text PRIMARY KEY, size text)")
    sink = inventory.sink()
    with pytest.raises(SinkError, match="does not fit") as caught:
        await sink.load_progress()
    await sink.aclose()
    assert "volume_id is missing" in str(caught.value)
    assert "size is" in str(caught.value)
    assert "crawled_at is missing" in str(caught.value)
    assert await inventory.query("SELECT count(*) FROM snapshots") == [(0,)]


async def test_prune_removes_only_unseen_rows_of_completed_volumes(inventory: Inventory) -> None:
    """A completed volume loses rows this crawl did not see; failed and partial volumes keep theirs."""
    await _crawl(
        inventory.sink(settings=SETTINGS),
        page("v1", 1, snapshots("v1", 5), last=True),
        page("v2", 1, snapshots("v2", 5), last=True),
        page("v3", 1, snapshots("v3", 3), last=True),
    )
    sink = inventory.sink(settings=SETTINGS, prune=True)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 3, start=2), last=True))  # v1-s0 and v1-s1 are gone
    await sink.write(page("v2", 1, snapshots("v2", 2, start=3)))
    await sink.fail("v2", "ServerError: 503")
    await sink.write(page("v3", 1, snapshots("v3", 1, start=2)))  # partial: the run stops here
    await sink.complete()
    await sink.aclose()
    assert sink.pruned == 2
    remaining = await inventory.ids()
    assert [i for i in remaining if i.startswith("v1")] == ["v1-s2", "v1-s3", "v1-s4"]
    assert len([i for i in remaining if i.startswith("v2")]) == 5
    assert len([i for i in remaining if i.startswith("v3")]) == 3


async def test_account_listing_prunes_the_whole_table(inventory: Inventory) -> None:
    """When the account-wide listing completes, rows of any volume it did not list are deleted."""
    await _crawl(
        inventory.sink(settings=SETTINGS),
        page("v1", 1, snapshots("v1", 2), last=True),
        page("v2", 1, snapshots("v2", 2), last=True),
    )
    sink = inventory.sink(settings=SETTINGS, prune=True)
    await _crawl(sink, page(None, 1, snapshots("v1", 1, start=1)), page(None, 2, [], last=True))
    assert sink.pruned == 3
    assert await inventory.ids() == ["v1-s1"]


async def test_resumed_crawl_keeps_its_identity_and_prunes_correctly(inventory: Inventory) -> None:
    """Killed mid-volume and run again, a crawl resumes after its markers and prunes only what it never saw."""
    await _crawl(inventory.sink(settings=SETTINGS), page("v1", 1, snapshots("v1", 10), last=True))
    killed = inventory.sink(settings=SETTINGS, prune=True)
    await killed.load_progress()
    await killed.write(page("v1", 1, snapshots("v1", 3, start=6)))  # v1-s9 was deleted meanwhile
    await killed.flush()
    await killed.write(page("v1", 2, snapshots("v1", 2, start=4)))  # buffered when the process dies
    await killed._close()  # no flush: what a kill leaves

    again = inventory.sink(settings=SETTINGS, prune=True)
    progress = await again.load_progress()
    assert progress == {"v1": VolumeProgress("partial", ("v1-s6", "v1-s7", "v1-s8"), 1)}
    assert again.started_at == killed.started_at
    assert await again.delivered_ids("v1") == {"v1-s6", "v1-s7", "v1-s8"}
    await again.write(page("v1", 2, snapshots("v1", 6), last=True))
    await again.complete()
    await again.aclose()
    assert again.pruned == 1
    assert await inventory.ids() == [f"v1-s{n}" for n in range(9)]
    fresh = inventory.sink(settings=SETTINGS)
    assert await fresh.load_progress() == {}  # completed: the next run is a new crawl
    await fresh.aclose()


async def test_other_settings_keep_their_own_checkpoint(inventory: Inventory) -> None:
    """A crawl with another sort does not resume from markers of a different ordering."""
    sink = inventory.sink(settings=SETTINGS)
    await _crawl(sink, page("v1", 1, snapshots("v1", 2)), complete=False)
    other = inventory.sink(settings={**SETTINGS, "sort": "created_at:asc"})
    assert await other.load_progress() == {}
    await other.aclose()
    same = inventory.sink(settings=SETTINGS)
    assert (await same.load_progress())["v1"].status == "partial"
    await same.aclose()


async def test_a_second_run_fails_at_once(inventory: Inventory) -> None:
    """While one run writes to a table, another on the same destination is refused: a BusyError (CLI exit 2)."""
    first = inventory.sink(settings=SETTINGS)
    await first.load_progress()
    second = inventory.sink(settings=SETTINGS)
    with pytest.raises(BusyError, match="in use by another snapcrawl run"):
        await second.load_progress()
    await second.aclose()
    await first.aclose()
    third = inventory.sink(settings=SETTINGS)
    await third.load_progress()  # free again once the first has closed
    await third.aclose()


async def test_on_commit_names_settled_volumes_once_durable(inventory: Inventory) -> None:
    """The listener hears of completed and failed volumes only, after their rows are committed."""
    heard: list[tuple[list[str | None], list[str]]] = []

    async def listener(volumes: object) -> None:
        heard.append((sorted(volumes), await inventory.ids()))  # type: ignore[call-overload]

    sink = inventory.sink(settings=SETTINGS)
    sink.on_commit = listener
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 2), last=True))
    await sink.write(page("v2", 1, snapshots("v2", 1)))
    await sink.fail("v3", "ServerError: 503")
    assert heard == []
    await sink.flush()
    await sink.aclose()
    assert heard == [(["v1", "v3"], ["v1-s0", "v1-s1", "v2-s0"])]


@contextlib.asynccontextmanager
async def _write_lock(inventory: Inventory) -> AsyncIterator[None]:
    """Another client holding the table's write lock: commits wait for it."""
    if inventory.kind == "sqlite":
        db = sqlite3.connect(sqlite_path(inventory.url), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
    else:
        conn = await asyncpg.connect(inventory.url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE snapshots IN EXCLUSIVE MODE")
                yield
        finally:
            await conn.close()


async def test_a_slow_database_slows_writers_instead_of_growing_memory(inventory: Inventory) -> None:
    """While a commit waits on the database, writers fill the buffer to its bound and then wait."""
    sink = inventory.sink(settings=SETTINGS, batch_rows=100, max_rows=300, commit_interval=3600)
    await sink.load_progress()
    done: list[int] = []

    async def writer(volume: str) -> None:
        for number in range(1, 11):
            await sink.write(page(volume, number, snapshots(volume, 50, start=number * 50), last=number == 10))
        done.append(1)

    with anyio.fail_after(50):
        async with anyio.create_task_group() as tg, _write_lock(inventory):
            for n in range(4):
                tg.start_soon(writer, f"v{n}")
            # One writer's commit is stuck on the lock; the other three fill the buffer, then wait.
            while sink.waiting < 3:  # noqa: ASYNC110 - a counter of the sink's, no event to wait on
                await anyio.sleep(0.01)
            assert not done
            assert sink.buffered <= 300 + 50
            assert sink.in_flight <= 300 + 50
    await sink.flush()
    await sink.aclose()
    assert len(done) == 4
    assert sink.peak_buffered <= 300 + 50
    assert len(await inventory.ids()) == 4 * 10 * 50


async def test_timestamps_are_stored_in_utc_and_null_metadata_is_null(inventory: Inventory) -> None:
    """Another offset is converted to UTC (fixed-width text in SQLite, so it sorts); no metadata is SQL NULL."""
    seoul = dt.timezone(dt.timedelta(hours=9))
    snapshot = Snapshot(
        id="v1-x", volume_id="v1", size=1, created_at=dt.datetime(2024, 1, 1, 9, 0, 0, 500, tzinfo=seoul)
    )
    await _crawl(inventory.sink(), page("v1", 1, [snapshot], last=True))
    rows = await inventory.query("SELECT created_at, metadata IS NULL, updated_at IS NULL FROM snapshots")
    if inventory.kind == "sqlite":
        assert rows == [("2024-01-01T00:00:00.000500+00:00", 1, 1)]
    else:
        assert rows == [(dt.datetime(2024, 1, 1, 0, 0, 0, 500, tzinfo=dt.UTC), True, True)]


async def test_closing_a_cancelled_crawl_still_commits(inventory: Inventory) -> None:
    """aclose in a cancelled scope (the crawl was interrupted) commits what was buffered."""
    sink = inventory.sink(settings=SETTINGS, commit_interval=3600)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 2)))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await sink.aclose()
    assert await inventory.ids() == ["v1-s0", "v1-s1"]
