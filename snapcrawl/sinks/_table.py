"""The inventory table both databases share: its columns, the table name rules, and the crawl's identity."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Final

import msgspec

from .._exceptions import ConfigError, SinkError, UnfitValueError
from .._models import Snapshot

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "check_fits",
    "crawl_key",
    "nul_in",
    "quote",
    "settings_key",
    "size_beyond_int64",
    "utc_text",
    "validate_table",
]

DEFAULT_TABLE: Final = "snapshots"

#: The table's columns in order: the API's fields as it names them, then when this crawl saw the row.
COLUMNS: Final = (
    "id",
    "volume_id",
    "size",
    "created_at",
    "updated_at",
    "status",
    "name",
    "description",
    "metadata",
    "user_id",
    "crawled_at",
)

# Unquoted-identifier rules common to SQLite and PostgreSQL, short enough for "<table>_volume_id_idx" to fit
# PostgreSQL's 63-byte names; the snapcrawl_ prefix is kept for the checkpoint's own tables.
_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


def check_fits(table: str, problems: list[str], destination: str) -> None:
    """Refuse a table whose columns do not fit snapshots, naming each problem; never alter it."""
    if problems:
        raise SinkError(
            f"table {table} does not fit snapshots: {'; '.join(problems)}; "
            "use another {table}, or drop or fix this one (snapcrawl never alters a table)",
            destination=destination,
            options=("table",),
        )


def validate_table(name: str) -> str:
    """``name`` if it is a plain table name, else a :class:`ConfigError` (no SQL reaches the database)."""
    if not _TABLE_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid table name {name!r}: use 1-48 letters, digits and underscores, not starting with a digit"
        )
    if name.lower().startswith(("snapcrawl_", "sqlite_", "pg_")):
        raise ConfigError(f"invalid table name {name!r}: the prefixes snapcrawl_, sqlite_ and pg_ are reserved")
    return name


def quote(name: str) -> str:
    """A validated identifier, double-quoted as both databases quote identifiers."""
    return '"' + validate_table(name) + '"'


def settings_key(settings: Mapping[str, object]) -> str:
    """The crawl settings as one canonical string."""
    return json.dumps(dict(settings), sort_keys=True, default=str)


def crawl_key(table: str, settings: Mapping[str, object]) -> str:
    """What identifies one crawl's checkpoint in a database: the table and the settings that order its pages."""
    return settings_key({"table": table, **settings})


def utc_text(value: dt.datetime | None) -> str | None:
    """A timestamp as fixed-width ISO 8601 in UTC, so that SQLite compares and sorts it as text correctly."""
    if value is None:
        return None
    if value.utcoffset() != dt.timedelta(0):
        value = value.astimezone(dt.UTC)
    return value.isoformat(timespec="microseconds")


_json: Final = msgspec.json.Encoder()
#: What a 64-bit signed integer column (SQLite INTEGER, PostgreSQL bigint) holds.
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_TEXT_FIELDS: Final = ("id", "volume_id", "status", "name", "description", "user_id")


def size_beyond_int64(snapshots: list[Snapshot], destination: str) -> UnfitValueError | None:
    """The error for the first snapshot whose ``size`` a 64-bit integer column cannot hold, if any.

    The API's JSON allows any integer; a column of text would keep it, but snapcrawl never alters a table, and
    a REAL would round it: the volume fails, naming the snapshot. One comparison a row.
    """
    for snapshot in snapshots:
        size = snapshot.size
        if not _INT64_MIN <= size <= _INT64_MAX:
            return UnfitValueError(
                f"{size} is beyond the 64-bit integers the size column holds",
                destination=destination,
                snapshot_id=snapshot.id,
                snapshot_volume=snapshot.volume_id,
                field="size",
            )
    return None


def nul_in(snapshots: list[Snapshot], destination: str) -> UnfitValueError | None:
    """The error for the first snapshot holding a NUL character (PostgreSQL text and jsonb reject it), if any.

    Cleared a page at a time, about 0.5 us a row: the text fields joined into one string searched once, and the
    metadata encoded in one call (a NUL is ``\\u0000`` there; a literal backslash-u also matches, and is then
    cleared field by field).
    """
    texts = "".join([f"{s.id}{s.volume_id}{s.status}{s.name}{s.description}{s.user_id}" for s in snapshots])
    if "\x00" not in texts and b"\\u0000" not in _json.encode([s.metadata for s in snapshots]):
        return None
    for snapshot in snapshots:
        for field in _TEXT_FIELDS:
            value = getattr(snapshot, field)
            if value is not None and "\x00" in value:
                break
        else:
            if not _holds_nul(snapshot.metadata):
                continue
            field = "metadata"
        return UnfitValueError(
            "holds a NUL character (\\u0000), which PostgreSQL text and jsonb cannot store",
            destination=destination,
            snapshot_id=snapshot.id,
            snapshot_volume=snapshot.volume_id,
            field=field,
        )
    return None


def _holds_nul(value: object) -> bool:
    """Whether a decoded JSON value holds a NUL in any string, key or value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
