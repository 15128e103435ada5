"""The inventory table both databases share: its columns, the table name rules, and the crawl's identity."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Final

from .._exceptions import ConfigError, SinkError

__all__ = [
    "COLUMNS",
    "DEFAULT_TABLE",
    "check_fits",
    "crawl_key",
    "quote",
    "settings_key",
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
            "use another --table, or drop or fix this one (snapcrawl never alters a table)",
            destination=destination,
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
