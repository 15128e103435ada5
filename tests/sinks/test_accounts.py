"""One table for many accounts: rows tagged and keyed by account, pruned within it; 0.2 tables and the migration."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import anyio
import pytest

from snapcrawl import Crawler, SinkError
from snapcrawl.cli import main
from snapcrawl.fleet import default_account, endpoint_host
from snapcrawl.simulator import Simulator
from snapcrawl.sinks import SqliteSink, postgres, sqlite
from snapcrawl.sinks._upgrade import migrate_table

from .conftest import Inventory, page, snapshots


async def _write(
    inventory: Inventory, account: str, pages: list[tuple[str | None, int, bool]], **options: object
) -> int:
    """One run as ``account``: each (volume, snapshots, last) written, then completed; return the rows pruned."""
    sink = inventory.sink(account=account, endpoint=f"{account}.example", **options)
    try:
        for number, (volume, count, last) in enumerate(pages, 1):
            await sink.write(page(volume, number, snapshots(volume or "acct-wide", count), last=last))
        await sink.complete()
    finally:
        await sink.aclose()
    return sink.pruned


async def test_two_accounts_share_a_table_and_prune_apart(inventory: Inventory) -> None:
    """The same ids under two accounts are two rows; each account's prune, by volume or account-wide, stays in it."""
    await _write(inventory, "a", [("v1", 3, True), ("v2", 2, True)])
    await _write(inventory, "b", [("v1", 3, True), ("v2", 2, True)])
    rows = await inventory.query("SELECT account, endpoint, count(*) FROM snapshots GROUP BY account, endpoint")
    assert sorted(rows) == [("a", "a.example", 5), ("b", "b.example", 5)]

    # Account a: v1 shrank to one snapshot (volume prune), then an account-wide listing saw only v2's.
    assert await _write(inventory, "a", [("v1", 1, True)], prune=True) == 2
    rows = await inventory.query("SELECT account, count(*) FROM snapshots GROUP BY account ORDER BY account")
    assert rows == [("a", 3), ("b", 5)]
    assert await _write(inventory, "b", [(None, 0, True)], prune=True) == 5  # b's account is empty now
    rows = await inventory.query("SELECT account, count(*) FROM snapshots GROUP BY account ORDER BY account")
    assert rows == [("a", 3)]


def _v02_table(kind: str) -> str:
    """The DDL snapcrawl 0.2 created its table with."""
    types = sqlite.TYPES if kind == "sqlite" else postgres.TYPES
    not_null = {"volume_id", "size", "created_at", "crawled_at"}
    columns = ", ".join(
        f"{name} {kind}" + (" PRIMARY KEY" if name == "id" else " NOT NULL" if name in not_null else "")
        for name, kind in types.items()
    )
    return f"CREATE TABLE snapshots ({columns})"


async def _v02_inventory(inventory: Inventory) -> None:
    """A database as snapcrawl 0.2 left it: its table, and its checkpoint of an unfinished crawl."""
    await inventory.query(_v02_table(inventory.kind))
    when = "'2024-01-01 00:00:00+00'" if inventory.kind == "postgres" else "'2024-01-01T00:00:00.000000+00:00'"
    stamp = "timestamptz" if inventory.kind == "postgres" else "TIMESTAMP"
    await inventory.query(f"CREATE TABLE snapcrawl_crawls (crawl text PRIMARY KEY, started_at {stamp} NOT NULL)")
    await inventory.query(f"INSERT INTO snapcrawl_crawls VALUES ('{{}}', {when})")  # noqa: S608 - fixed values
    for n in range(3):
        await inventory.query(
            f"INSERT INTO snapshots (id, volume_id, size, created_at, crawled_at) "  # noqa: S608 - fixed values
            f"VALUES ('old-{n}', 'v1', {n}, {when}, {when})"
        )


async def test_a_02_table_is_refused_naming_the_migration_then_migrated(inventory: Inventory) -> None:
    """A 0.2 table is never altered by a crawl: the error names ``snapcrawl migrate``; after it, rows are kept."""
    await _v02_inventory(inventory)
    sink = inventory.sink(account="prod")
    with pytest.raises(SinkError, match="snapcrawl migrate --out") as caught:
        await sink.load_progress()
    await sink.aclose()
    assert "0.2" in str(caught.value)
    assert await inventory.ids() == ["old-0", "old-1", "old-2"]  # untouched

    assert await migrate_table(inventory.url, table="snapshots", account="prod", endpoint="h.example") == 3
    assert await inventory.query("SELECT to_regclass('snapcrawl_crawls') IS NULL" if inventory.kind == "postgres"
                                 else "SELECT count(*) = 0 FROM sqlite_master WHERE name = 'snapcrawl_crawls'") == [
        (True,) if inventory.kind == "postgres" else (1,)
    ]  # the 0.2 checkpoint is gone: its unfinished crawl starts over  # fmt: skip
    assert await migrate_table(inventory.url, table="snapshots", account="prod", endpoint="h.example") == 0  # again
    rows = await inventory.query("SELECT account, endpoint, count(*) FROM snapshots GROUP BY account, endpoint")
    assert rows == [("prod", "h.example", 3)]
    # The migrated table takes crawls: another account's rows beside, and prune stays within each.
    await _write(inventory, "other", [("v1", 2, True)], prune=True)
    assert await _write(inventory, "prod", [("v1", 1, True)], prune=True) == 3
    rows = await inventory.query("SELECT account, count(*) FROM snapshots GROUP BY account ORDER BY account")
    assert rows == [("other", 2), ("prod", 1)]


def test_migrate_command(tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """``snapcrawl migrate`` tags the old rows with the account a crawl with the same options writes as."""
    import sqlite3  # noqa: PLC0415 - this test's own check

    db = tmp_path / "inv.db"
    with sqlite3.connect(db) as conn:
        conn.execute(_v02_table("sqlite"))
        conn.execute(
            "INSERT INTO snapshots (id, volume_id, size, created_at, crawled_at) VALUES ('x', 'v', 1, 'a', 'b')"
        )
    monkeypatch.setenv("SCP_ACCESS_KEY", simulator.credentials.access_key)
    monkeypatch.setenv("SCP_SECRET_KEY", simulator.credentials.secret_key)
    assert main(["migrate", "--out", f"sqlite:///{db}", "--endpoint", simulator.url]) == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT account, endpoint FROM snapshots").fetchall()
    assert rows == [(default_account(simulator.url, simulator.credentials.access_key), endpoint_host(simulator.url))]
    assert main(["migrate", "--out", "out.jsonl", "--endpoint", simulator.url]) == 2  # not a database


async def test_crawl_into_tags_rows_with_the_derived_account(simulator: Simulator, tmp_path: Path) -> None:
    """Without an account, a crawl's rows carry ``host/hash(access key)``: two keys, two accounts, no constant."""
    inventory = Inventory("sqlite", f"sqlite:///{tmp_path / 'inv.db'}")
    async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
        sink = sqlite.SqliteSink(tmp_path / "inv.db")
        try:
            await crawler.crawl_into(simulator.dataset.volume_ids[:3], sink)
        finally:
            await sink.aclose()
    expected = default_account(simulator.url, simulator.credentials.access_key)
    assert expected.startswith(endpoint_host(simulator.url) + "/")
    assert default_account(simulator.url, "another-key") != expected
    rows = await inventory.query("SELECT DISTINCT account FROM snapshots")
    assert rows == [(expected,)]


async def test_every_crawl_is_recorded_in_snapcrawl_runs(simulator: Simulator, inventory: Inventory) -> None:
    """One row per crawl: complete with its counts; a crawl with a failed (invalid) volume is recorded, not complete."""
    async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
        for volumes in (simulator.dataset.volume_ids[:3], [*simulator.dataset.volume_ids[:2], " "]):
            sink = inventory.sink(account="prod", endpoint="h", prune=True)
            try:
                await crawler.crawl_into(volumes, sink)
            finally:
                await sink.aclose()
    rows = await inventory.query(
        "SELECT account, complete, snapshots, rows_upserted, rows_pruned, failed_volumes, ended_at IS NOT NULL "
        "FROM snapcrawl_runs ORDER BY run"
    )
    first = sum(simulator.dataset.count(v) for v in simulator.dataset.volume_ids[:3])
    second = sum(simulator.dataset.count(v) for v in simulator.dataset.volume_ids[:2])
    no_failure = "[]" if inventory.kind == "sqlite" else []
    failure = '[" "]' if inventory.kind == "sqlite" else [" "]
    assert [tuple(row) for row in rows] == [
        ("prod", True, first, first, 0, no_failure, True),
        ("prod", False, second, second, 0, failure, True),
    ]


async def test_a_02_checkpoint_alone_is_refused_then_dropped_by_migrate(inventory: Inventory) -> None:
    """A new table beside a 0.2 checkpoint: refused naming the migration; ``migrate`` drops that checkpoint."""
    stamp = "timestamptz" if inventory.kind == "postgres" else "TIMESTAMP"
    await inventory.query(f"CREATE TABLE snapcrawl_crawls (crawl text PRIMARY KEY, started_at {stamp} NOT NULL)")
    sink = inventory.sink(table="fresh")
    with pytest.raises(SinkError, match="snapcrawl migrate --out"):
        await sink.load_progress()
    await sink.aclose()
    with pytest.raises(SinkError, match="table fresh does not exist"):
        await migrate_table(inventory.url, table="fresh", account="prod", endpoint="h")
    await _write(inventory, "prod", [("v1", 2, True)], table="fresh")  # the checkpoint was dropped: it works now
    assert await inventory.ids("fresh") == ["v1-s0", "v1-s1"]


async def test_sinks_of_many_accounts_open_one_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """A fleet's accounts open one new SQLite file together: none may fail with 'database is locked'.

    Switching a file to WAL needs it to itself, and SQLite answers busy at once there, without its busy timeout:
    one account's open failed when another's was creating the tables (seen in CI as ``account a: FAILED``).
    """
    for attempt in range(15):
        path = tmp_path / f"fleet-{attempt}.db"
        sinks = [SqliteSink(path, account=f"acct-{n}", lock=False) for n in range(4)]
        try:
            async with anyio.create_task_group() as tg:
                for sink in sinks:
                    tg.start_soon(sink.begin_run)
        finally:
            for sink in sinks:
                await sink.aclose()
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("SELECT count(*) FROM snapcrawl_runs").fetchone() == (4,)
