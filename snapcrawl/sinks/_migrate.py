"""Tables from snapcrawl 0.2 (no ``account``): the error that names the migration, and the migration itself.

snapcrawl never alters a table on its own. A 0.2 table (key ``id``, no ``account`` or ``endpoint`` column) is
refused with an error naming ``snapcrawl migrate``, which, asked explicitly, gives every existing row the
account and endpoint named on its command line (by default the ones a crawl with the same options would use),
makes ``(account, id)`` the key, and drops the 0.2 checkpoint's unfinished crawls (their next run starts over).
SQLite cannot change a key in place: the table is rebuilt under its name, in one transaction. PostgreSQL alters
it in one transaction.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
from collections.abc import Mapping
from typing import Any, Final

import anyio.to_thread

from .._exceptions import ConfigError, SinkError
from ._lock import lock_file
from ._table import COLUMNS, quote, validate_table
from ._urls import redact, sqlite_path

__all__ = [
    "ACCOUNT_COLUMNS",
    "MIGRATE_COMMAND",
    "migrate_table",
    "pg_check_account",
    "pg_migrate",
    "sqlite_check_account",
    "sqlite_migrate",
]

#: The columns a fleet's table adds after the snapshot's fields: the config's account name, the endpoint host.
ACCOUNT_COLUMNS: Final = ("account", "endpoint")
MIGRATE_COMMAND: Final = "snapcrawl migrate --out DEST [--table NAME] [--account NAME]"


def _old_table(table: str, destination: str) -> SinkError:
    return SinkError(
        f"table {table} was written by snapcrawl 0.2: it has no account column. snapcrawl never alters a table on "
        f"its own; to give its rows an account and keep them, run: {MIGRATE_COMMAND} (see docs/many-accounts.md)",
        destination=destination,
    )


def sqlite_check_account(found: Mapping[str, object], table: str, destination: str) -> None:
    """Refuse a table without the account columns (a 0.2 table), naming the migration."""
    if not all(column in found for column in ACCOUNT_COLUMNS):
        raise _old_table(table, destination)


def pg_check_account(found: Mapping[str, object], table: str, destination: str) -> None:
    """Refuse a table without the account columns (a 0.2 table), naming the migration."""
    sqlite_check_account(found, table, destination)


def _old_checkpoint(destination: str) -> SinkError:
    return SinkError(
        "its checkpoint (snapcrawl_crawls) was written by snapcrawl 0.2: it has no account column. snapcrawl never "
        f"alters a table on its own; run: {MIGRATE_COMMAND} (see docs/many-accounts.md)",
        destination=destination,
    )


def sqlite_check_checkpoint(db: sqlite3.Connection, destination: str) -> None:
    """Refuse a 0.2 checkpoint (``snapcrawl_crawls`` without ``account``), naming the migration."""
    if not any(row[1] == "account" for row in db.execute("PRAGMA table_info(snapcrawl_crawls)")):
        raise _old_checkpoint(destination)


async def pg_check_checkpoint(db: Any, destination: str) -> None:
    """Refuse a 0.2 checkpoint (``snapcrawl_crawls`` without ``account``), naming the migration."""
    if not await db.fetchval(
        "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('snapcrawl_crawls') AND attname = 'account' "
        "AND NOT attisdropped"
    ):
        raise _old_checkpoint(destination)


def sqlite_migrate(db: sqlite3.Connection, table: str, *, account: str, endpoint: str) -> int:
    """Rebuild a 0.2 ``table`` with the account columns, its rows given ``account``; return the rows kept.

    Runs in one transaction; a table that already has them is left alone (0 rows). Raises :class:`SinkError`
    naming the table when it does not exist.
    """
    q = quote(table)
    db.execute("BEGIN IMMEDIATE")
    _forget_checkpoint_sqlite(db)
    db.execute("COMMIT")
    found = {row[1] for row in db.execute(f"PRAGMA table_info({q})")}
    if not found:
        raise SinkError(f"table {table} does not exist: nothing to migrate", destination="sqlite")
    if "account" in found:
        return 0
    columns = ", ".join(COLUMNS)
    old = f'"{table}_v02"'  # the 0.2 table, until its rows are copied
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"ALTER TABLE {q} RENAME TO {old}")
        kinds = {row[1]: (row[2], row[3]) for row in db.execute(f"PRAGMA table_info({old})")}
        definitions = ", ".join(
            f"{column} {kinds[column][0]}" + (" NOT NULL" if kinds[column][1] or column == "id" else "")
            for column in COLUMNS
        )
        db.execute(
            f"CREATE TABLE {q} ({definitions}, account TEXT NOT NULL, endpoint TEXT NOT NULL, "
            "PRIMARY KEY (account, id))"
        )
        cursor = db.execute(
            f"INSERT INTO {q} ({columns}, account, endpoint) SELECT {columns}, ?, ? FROM {old}",  # noqa: S608
            (account, endpoint),
        )
        db.execute(f"DROP TABLE {old}")
        db.execute(f'CREATE INDEX "{table}_account_volume_idx" ON {q} (account, volume_id)')
        _forget_checkpoint_sqlite(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return cursor.rowcount


def _forget_checkpoint_sqlite(db: sqlite3.Connection) -> None:
    """Drop a 0.2 checkpoint (its unfinished crawls start over): a new one, with ``account``, is made on open."""
    crawls = [row[1] for row in db.execute("PRAGMA table_info(snapcrawl_crawls)")]
    if crawls and "account" not in crawls:
        db.execute("DROP TABLE snapcrawl_crawls")
        db.execute("DROP TABLE IF EXISTS snapcrawl_progress")


async def pg_migrate(db: Any, table: str, *, account: str, endpoint: str) -> int:
    """Alter a 0.2 ``table`` to carry the account columns, its rows given ``account``; return the rows kept.

    Runs in one transaction; a table that already has them is left alone (0 rows).
    """
    q = quote(table)
    async with db.transaction():
        await _forget_checkpoint_pg(db)
    async with db.transaction():
        found = {
            row["attname"]
            for row in await db.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                q,
            )
        }
        if not found:
            raise SinkError(f"table {table} does not exist: nothing to migrate", destination=table)
        if "account" in found:
            return 0
        await db.execute(f"ALTER TABLE {q} ADD COLUMN account text, ADD COLUMN endpoint text")
        status = await db.execute(f"UPDATE {q} SET account = $1, endpoint = $2", account, endpoint)  # noqa: S608
        await db.execute(f"ALTER TABLE {q} ALTER COLUMN account SET NOT NULL, ALTER COLUMN endpoint SET NOT NULL")
        constraint = await db.fetchval(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'", q
        )
        if constraint is not None:
            await db.execute(f'ALTER TABLE {q} DROP CONSTRAINT "{constraint}"')
        await db.execute(f"ALTER TABLE {q} ADD PRIMARY KEY (account, id)")
        await db.execute(f'CREATE INDEX "{table}_account_volume_idx" ON {q} (account, volume_id)')
    return int(status.rpartition(" ")[2])


async def _forget_checkpoint_pg(db: Any) -> None:
    """Drop a 0.2 checkpoint (its unfinished crawls start over): a new one, with ``account``, is made on open."""
    crawls = await db.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('snapcrawl_crawls') AND attnum > 0 "
        "AND NOT attisdropped"
    )
    if crawls and "account" not in {row["attname"] for row in crawls}:
        await db.execute("DROP TABLE snapcrawl_crawls")
        await db.execute("DROP TABLE IF EXISTS snapcrawl_progress")


async def migrate_table(out: str, *, table: str, account: str, endpoint: str) -> int:
    """Migrate ``table`` of the database ``out`` (``sqlite:///...`` or ``postgresql://...``); return the rows kept.

    Holds the same lock a crawl holds, so it never runs under one.
    """

    validate_table(table)
    scheme = out.partition("://")[0].lower()
    if scheme == "sqlite":
        path = sqlite_path(out)
        destination = f"sqlite:///{path}"

        def run() -> int:
            fd = lock_file(path, destination=destination)
            try:
                with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as db:
                    return sqlite_migrate(db, table, account=account, endpoint=endpoint)
            except sqlite3.Error as exc:
                raise SinkError(str(exc), destination=destination) from None
            finally:
                os.close(fd)

        return await anyio.to_thread.run_sync(run)
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"snapcrawl migrate needs a database --out (sqlite:/// or postgresql://), not {out!r}")
    try:
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:
        raise ConfigError("a postgresql:// destination needs asyncpg: pip install 'snapcrawl[postgres]'") from None
    destination = redact(out)
    try:
        conn = await asyncpg.connect(out, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SinkError(f"cannot connect: {exc}", destination=destination) from None
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"snapcrawl:{table}"):
            raise SinkError(f"table {table} is in use by a snapcrawl run; wait for it to end", destination=destination)
        return await pg_migrate(conn, table, account=account, endpoint=endpoint)
    except asyncpg.PostgresError as exc:
        raise SinkError(f"{type(exc).__name__}: {exc}", destination=destination) from None
    finally:
        await conn.close()
