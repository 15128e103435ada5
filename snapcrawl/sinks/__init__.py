"""Destinations of a crawl: JSON Lines files, SQLite and PostgreSQL inventories.

:func:`open_sink` turns an ``--out`` value into a sink; each meets the :class:`Sink` protocol the crawl run
writes through.
"""

from ._base import CommitListener, Sink, VolumeProgress
from ._open import AnySink, open_sink, sqlite_path
from ._table import DEFAULT_TABLE
from .jsonl import JsonLinesSink
from .postgres import PostgresSink
from .sqlite import SqliteSink

__all__ = [
    "DEFAULT_TABLE",
    "AnySink",
    "CommitListener",
    "JsonLinesSink",
    "PostgresSink",
    "Sink",
    "SqliteSink",
    "VolumeProgress",
    "open_sink",
    "sqlite_path",
]
