"""``snapcrawl_runs``: one row per account per crawl, the inventory's record of every sync.

A row is inserted when a crawl starts (``ended_at`` NULL, ``complete`` false) and finished when it ends, however
it ends short of a kill: so a killed crawl leaves a row that says it never finished. ``complete`` is true only for
a crawl that ran to its end with no volume failed: the certificate consumers ask for ("when was account X last
fully synced?"). ``failed_volumes`` lists the volumes given up on (``*`` for the account-wide listing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from typing import Any, Final

from ._table import utc_text

__all__ = ["RunRecord", "pg_begin", "pg_end", "sqlite_begin", "sqlite_end"]

ACCOUNT_LISTING: Final = "*"

_SQLITE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS snapcrawl_runs (
    run            INTEGER PRIMARY KEY AUTOINCREMENT,
    account        TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    started_at     TIMESTAMP NOT NULL,
    ended_at       TIMESTAMP,
    complete       INTEGER NOT NULL DEFAULT 0,
    snapshots      INTEGER NOT NULL DEFAULT 0,
    rows_upserted  INTEGER NOT NULL DEFAULT 0,
    rows_pruned    INTEGER NOT NULL DEFAULT 0,
    failed_volumes JSON NOT NULL DEFAULT '[]'
)"""
_PG_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS snapcrawl_runs (run bigserial PRIMARY KEY, account text NOT NULL,"
    " endpoint text NOT NULL, table_name text NOT NULL, started_at timestamptz NOT NULL, ended_at timestamptz,"
    " complete boolean NOT NULL DEFAULT false, snapshots bigint NOT NULL DEFAULT 0,"
    " rows_upserted bigint NOT NULL DEFAULT 0, rows_pruned bigint NOT NULL DEFAULT 0,"
    " failed_volumes text[] NOT NULL DEFAULT '{}')"
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """How one crawl of one account ended."""

    ended_at: dt.datetime
    complete: bool
    snapshots: int
    rows_upserted: int
    rows_pruned: int
    failed_volumes: list[str | None]

    def failed(self) -> list[str]:
        """The failed volumes as stored: ``*`` for the account-wide listing."""
        return [ACCOUNT_LISTING if volume is None else volume for volume in self.failed_volumes]


def sqlite_begin(db: sqlite3.Connection, *, account: str, endpoint: str, table: str, started_at: dt.datetime) -> int:
    """Insert the run's row (creating the table if needed); return its id."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(_SQLITE_TABLE)
        cursor = db.execute(
            "INSERT INTO snapcrawl_runs (account, endpoint, table_name, started_at) VALUES (?, ?, ?, ?)",
            (account, endpoint, table, utc_text(started_at)),
        )
    return int(cursor.lastrowid or 0)


def sqlite_end(db: sqlite3.Connection, run: int, record: RunRecord) -> None:
    """Finish the run's row."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE snapcrawl_runs SET ended_at = ?, complete = ?, snapshots = ?, rows_upserted = ?, rows_pruned = ?, "
            "failed_volumes = ? WHERE run = ?",
            (
                utc_text(record.ended_at),
                int(record.complete),
                record.snapshots,
                record.rows_upserted,
                record.rows_pruned,
                json.dumps(record.failed()),
                run,
            ),
        )


async def pg_begin(db: Any, *, account: str, endpoint: str, table: str, started_at: dt.datetime) -> int:
    """Insert the run's row (creating the table if needed); return its id."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(hashtextextended('snapcrawl:schema', 0))")
        await db.execute(_PG_TABLE)
        run: int = await db.fetchval(
            "INSERT INTO snapcrawl_runs (account, endpoint, table_name, started_at) VALUES ($1, $2, $3, $4) "
            "RETURNING run",
            account,
            endpoint,
            table,
            started_at,
        )
    return run


async def pg_end(db: Any, run: int, record: RunRecord) -> None:
    """Finish the run's row."""
    await db.execute(
        "UPDATE snapcrawl_runs SET ended_at = $1, complete = $2, snapshots = $3, rows_upserted = $4, "
        "rows_pruned = $5, failed_volumes = $6 WHERE run = $7",
        record.ended_at,
        record.complete,
        record.snapshots,
        record.rows_upserted,
        record.rows_pruned,
        record.failed(),
        run,
    )
