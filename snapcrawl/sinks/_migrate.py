"""Tables from snapcrawl 0.2 (no ``account``): the error that names the migration, and the migration itself.

snapcrawl never alters a table on its own. A 0.2 table (key ``id``, no ``account`` or ``endpoint`` column) is
refused with an error naming ``snapcrawl migrate``, which, asked explicitly, gives every existing row the
account and endpoint named on its command line (by default the ones a crawl with the same options would use),
makes ``(account, id)`` the key, and drops the 0.2 checkpoint's unfinished crawls (their next run starts over).
SQLite cannot change a key in place: the table is rebuilt under its name, in one transaction. PostgreSQL alters
it in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any, Final

from .._exceptions import SinkError
from ._table import COLUMNS, quote

__all__ = [
    "ACCOUNT_COLUMNS",
    "MIGRATE_COMMAND",
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
