"""From an ``--out`` value to a sink: a file or ``-`` for JSON Lines, ``sqlite://`` or ``postgresql://`` URLs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeAlias

from .._exceptions import ConfigError
from ._base import Sink
from ._table import DEFAULT_TABLE, validate_table
from .jsonl import JsonLinesSink
from .postgres import PostgresSink
from .sqlite import SqliteSink

__all__ = ["AnySink", "open_sink", "sqlite_path"]

AnySink: TypeAlias = JsonLinesSink | SqliteSink | PostgresSink

if TYPE_CHECKING:  # every sink meets the protocol the crawl run relies on
    _SINKS: tuple[type[Sink], ...] = (JsonLinesSink, SqliteSink, PostgresSink)


def sqlite_path(url: str) -> str:
    """The file of a SQLAlchemy-style SQLite URL: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``."""
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:" or "?" in path:
        raise ConfigError(
            f"invalid SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(a file: an in-memory database cannot be resumed)"
        )
    return path


def open_sink(
    out: str | None,
    *,
    table: str = DEFAULT_TABLE,
    prune: bool = False,
    state: str | None = None,
    settings: Mapping[str, object] | None = None,
    batch_rows: int = 5_000,
    max_rows: int = 20_000,
    resume_finished: bool = False,
    account: str | None = None,
    endpoint: str | None = None,
    lock: bool = True,
) -> AnySink:
    """The sink for an ``--out`` value; nothing is opened until its first use (``load_progress``).

    ``settings`` (endpoint, name filter, sort) identify the crawl in its checkpoint. A database keeps its
    checkpoint itself, so ``state`` (and ``resume_finished``, see :class:`JsonLinesSink`) are for JSON Lines
    only; ``table`` and ``prune`` are for databases only. ``account`` and ``endpoint`` (a host) tag a database's
    rows; without them, ``Crawler.crawl_into`` binds the crawl's own (see :func:`snapcrawl.fleet.default_account`).
    ``lock=False``: the caller holds a SQLite file's lock (a fleet, for its accounts' sinks).
    """
    validate_table(table)
    sink: AnySink
    if out is not None and "://" in out:
        scheme = out.partition("://")[0].lower()
        if state is not None:
            raise ConfigError(
                "{state} is for JSON Lines output: a database keeps its checkpoint in itself", options=("state",)
            )
        if resume_finished:
            raise ConfigError(
                "{resume_finished} is for JSON Lines output with {state}", options=("resume_finished", "state")
            )
        if scheme == "sqlite":
            sink = SqliteSink(
                sqlite_path(out),
                table=table,
                prune=prune,
                settings=settings,
                batch_rows=batch_rows,
                max_rows=max_rows,
                account=account,
                endpoint=endpoint,
                lock=lock,
            )
        elif scheme in ("postgresql", "postgres"):
            sink = PostgresSink(
                out,
                table=table,
                prune=prune,
                settings=settings,
                batch_rows=batch_rows,
                max_rows=max_rows,
                account=account,
                endpoint=endpoint,
            )
        else:
            raise ConfigError(
                f"unknown destination scheme {scheme}://: use a file, -, sqlite:///FILE or postgresql://..."
            )
    else:
        if prune:
            raise ConfigError("{prune} needs a database destination (sqlite:/// or postgresql://)", options=("prune",))
        if table != DEFAULT_TABLE:
            raise ConfigError("{table} needs a database destination (sqlite:/// or postgresql://)", options=("table",))
        sink = JsonLinesSink(
            out or "-",
            state=state,
            settings=settings,
            batch_rows=batch_rows,
            max_rows=max_rows,
            resume_finished=resume_finished,
        )
    return sink
