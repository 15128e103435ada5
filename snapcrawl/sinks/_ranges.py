"""The ``snapcrawl_ranges`` checkpoint table in SQLite and PostgreSQL: the account fan-out's committed ranges.

One row per crawl and fan-out range (see :mod:`snapcrawl._ranges`), written in the same transaction as the rows
it covers and deleted with the rest of the checkpoint when the crawl completes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .._ranges import RangeProgress, RangeStep

__all__ = [
    "pg_create",
    "pg_delete",
    "pg_load",
    "pg_write",
    "sqlite_create",
    "sqlite_delete",
    "sqlite_load",
    "sqlite_write",
]

_json: Final = msgspec.json.Encoder()

_SQLITE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS snapcrawl_ranges (
    crawl    TEXT NOT NULL,
    part     INTEGER NOT NULL,
    first_id TEXT,
    markers  JSON NOT NULL,
    full     INTEGER NOT NULL,
    closed   INTEGER NOT NULL,
    PRIMARY KEY (crawl, part)
)"""
_PG_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS snapcrawl_ranges (crawl text NOT NULL, part integer NOT NULL, first_id text,"
    ' markers text[] NOT NULL, "full" boolean NOT NULL, closed boolean NOT NULL, PRIMARY KEY (crawl, part))'
)


def sqlite_create(db: sqlite3.Connection) -> None:
    """Create the table if missing (inside the caller's transaction)."""
    db.execute(_SQLITE_TABLE)


def sqlite_load(db: sqlite3.Connection, key: str) -> dict[int, RangeProgress]:
    """The committed ranges of crawl ``key``."""
    return {
        part: RangeProgress(first, tuple(json.loads(markers)), bool(full), bool(closed))
        for part, first, markers, full, closed in db.execute(
            "SELECT part, first_id, markers, full, closed FROM snapcrawl_ranges WHERE crawl = ?", (key,)
        )
    }


def sqlite_write(db: sqlite3.Connection, key: str, steps: Mapping[int, RangeStep]) -> None:
    """Fold a batch's range steps in (inside the caller's transaction)."""
    if not steps:
        return
    db.executemany(
        "INSERT INTO snapcrawl_ranges (crawl, part, first_id, markers, full, closed) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (crawl, part) DO UPDATE SET first_id = coalesce(snapcrawl_ranges.first_id, excluded.first_id), "
        "markers = CASE WHEN excluded.markers = '[]' THEN snapcrawl_ranges.markers ELSE excluded.markers END, "
        "full = max(snapcrawl_ranges.full, excluded.full), closed = max(snapcrawl_ranges.closed, excluded.closed)",
        [
            (key, part, step.first, json.dumps(step.markers or []), int(step.full), int(step.closed))
            for part, step in steps.items()
        ],
    )


def sqlite_delete(db: sqlite3.Connection, key: str) -> None:
    """Forget crawl ``key``'s ranges (it completed)."""
    db.execute("DELETE FROM snapcrawl_ranges WHERE crawl = ?", (key,))


async def pg_create(db: Any) -> None:
    """Create the table if missing (inside the caller's transaction)."""
    await db.execute(_PG_TABLE)


async def pg_load(db: Any, key: str) -> dict[int, RangeProgress]:
    """The committed ranges of crawl ``key``."""
    rows = await db.fetch('SELECT part, first_id, markers, "full", closed FROM snapcrawl_ranges WHERE crawl = $1', key)
    return {
        row["part"]: RangeProgress(row["first_id"], tuple(row["markers"]), row["full"], row["closed"]) for row in rows
    }


async def pg_write(db: Any, key: str, steps: Mapping[int, RangeStep]) -> None:
    """Fold a batch's range steps in, in one statement (inside the caller's transaction)."""
    if not steps:
        return
    parts = [
        {"part": part, "first_id": step.first, "markers": list(step.markers or ()), "full": step.full,
         "closed": step.closed}
        for part, step in steps.items()
    ]  # fmt: skip
    await db.execute(
        'INSERT INTO snapcrawl_ranges (crawl, part, first_id, markers, "full", closed) '
        'SELECT $1, part, first_id, markers, "full", closed FROM json_to_recordset($2::json) '
        'AS r(part integer, first_id text, markers text[], "full" boolean, closed boolean) '
        "ON CONFLICT (crawl, part) DO UPDATE SET first_id = coalesce(snapcrawl_ranges.first_id, excluded.first_id), "
        "markers = CASE WHEN excluded.markers = '{}' THEN snapcrawl_ranges.markers ELSE excluded.markers END, "
        '"full" = snapcrawl_ranges."full" OR excluded."full", closed = snapcrawl_ranges.closed OR excluded.closed',
        key,
        _json.encode(parts).decode(),
    )


async def pg_delete(db: Any, key: str) -> None:
    """Forget crawl ``key``'s ranges (it completed)."""
    await db.execute("DELETE FROM snapcrawl_ranges WHERE crawl = $1", key)
