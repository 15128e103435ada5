"""Resumable crawls: a SQLite checkpoint that commits together with the output it covers.

The invariant: the checkpoint's ``output_offset`` is a length of the output file at which every volume marked
``done`` is complete and every other volume is present exactly up to its recorded ``marker``. Writers flush the
output first and commit the checkpoint second; a resumed crawl truncates the output back to ``output_offset``,
so lines written after the last commit (whose volumes the checkpoint does not cover) are written again, once.
That holds after ``kill -9`` at any moment: SQLite's WAL makes each commit atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple

from ._exceptions import ConfigError
from ._models import Page
from ._output import JsonLinesWriter
from .sinks import VolumeProgress

__all__ = ["Checkpoint", "CheckpointSink", "VolumeState"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS volumes (
    volume_id TEXT PRIMARY KEY,
    status    TEXT NOT NULL CHECK (status IN ('partial', 'done', 'failed')),
    marker    TEXT,
    pages     INTEGER NOT NULL DEFAULT 0,
    error     TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: The whole-account listing is checkpointed under this key.
ACCOUNT_KEY: Final = "*account*"


class VolumeState(NamedTuple):
    """What a checkpoint knows of one volume: ``done``, ``partial`` or ``failed``, and the last id written."""

    status: str
    marker: str | None
    pages: int


class Checkpoint:
    """Per-volume progress of a crawl into one output file, in a SQLite database (WAL mode).

    ``settings`` (e.g. the sort and name filter) are stored on first use; resuming with different ones is a
    :class:`ConfigError`, since markers only make sense in the same ordering. Open it with ``with``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, output: str | os.PathLike[str], settings: Mapping[str, object]
    ) -> None:
        self.path = Path(path)
        self.output = Path(output).resolve()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot use {self.path} as a state file: {exc}") from None
        self._check_meta("output", str(self.output))
        self._check_meta("settings", json.dumps(dict(settings), sort_keys=True))
        self._db.execute("BEGIN")

    def _check_meta(self, key: str, value: str) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        elif row[0] != value:
            raise ConfigError(
                f"state file {self.path} belongs to another crawl ({key} {row[0]}, not {value}); "
                "use a new state file, or the same options as before"
            )

    @property
    def output_offset(self) -> int:
        """The committed length of the output file."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'output_offset'").fetchone()
        return int(row[0]) if row else 0

    def open_output(self) -> BinaryIO:
        """Open the output for appending, cut back to the committed length (lines past it are rewritten)."""
        committed = self.output_offset
        try:
            file = open(self.output, "ab")  # noqa: SIM115 - the caller owns and closes it
        except OSError as exc:
            raise ConfigError(f"cannot write {self.output}: {exc.strerror}") from None
        size = file.seek(0, os.SEEK_END)
        if size < committed:
            file.close()
            raise ConfigError(
                f"{self.output} is shorter ({size} bytes) than {self.path} records ({committed} bytes): "
                "it was changed outside snapcrawl; start again with a new state file"
            )
        file.truncate(committed)
        file.seek(committed)
        return file

    def get(self, volume_id: str | None) -> VolumeState | None:
        """The recorded state of a volume (``None``: the whole account), or ``None`` if never seen."""
        row = self._db.execute(
            "SELECT status, marker, pages FROM volumes WHERE volume_id = ?", (volume_id or ACCOUNT_KEY,)
        ).fetchone()
        return None if row is None else VolumeState(*row)

    def states(self) -> dict[str | None, VolumeState]:
        """Every volume's recorded state (``None``: the whole account)."""
        rows = self._db.execute("SELECT volume_id, status, marker, pages FROM volumes").fetchall()
        return {
            (None if v == ACCOUNT_KEY else v): VolumeState(status, marker, pages) for v, status, marker, pages in rows
        }

    def record_page(self, volume_id: str | None, marker: str | None, *, last: bool) -> None:
        """Note that a page of the volume, ending at ``marker``, has been written (uncommitted until commit)."""
        self._db.execute(
            "INSERT INTO volumes (volume_id, status, marker, pages) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (volume_id) DO UPDATE SET status = excluded.status, "
            "marker = coalesce(excluded.marker, volumes.marker), pages = volumes.pages + 1, error = NULL",
            (volume_id or ACCOUNT_KEY, "done" if last else "partial", marker),
        )

    def record_failure(self, volume_id: str | None, error: str) -> None:
        """Note that a volume failed; it is retried from its marker when the crawl is resumed."""
        self._db.execute(
            "INSERT INTO volumes (volume_id, status, error) VALUES (?, 'failed', ?) "
            "ON CONFLICT (volume_id) DO UPDATE SET status = 'failed', error = excluded.error",
            (volume_id or ACCOUNT_KEY, error),
        )

    def commit(self, output_offset: int) -> None:
        """Make everything recorded so far durable, with the output length it covers (flush the output first)."""
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('output_offset', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(output_offset),),
        )
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def counts(self) -> dict[str, int]:
        """How many volumes are done, partial or failed."""
        return dict(self._db.execute("SELECT status, count(*) FROM volumes GROUP BY status").fetchall())

    def close(self) -> None:
        """Roll back what was not committed, and close the database."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        self._db.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CheckpointSink:
    """A JSON Lines :class:`Sink` over :class:`JsonLinesWriter`, resumable with a :class:`Checkpoint`."""

    resumable = True

    def __init__(self, writer: JsonLinesWriter, checkpoint: Checkpoint | None) -> None:
        self.writer = writer
        self.checkpoint = checkpoint
        self.resumable = checkpoint is not None

    async def load_progress(self) -> dict[str | None, VolumeProgress]:
        if self.checkpoint is None:
            return {}
        return {
            volume_id: VolumeProgress(state.status, (state.marker,) if state.marker else (), state.pages)  # type: ignore[arg-type]
            for volume_id, state in self.checkpoint.states().items()
        }

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return set()

    async def write(self, page: Page) -> None:
        self.writer.write_page(page)

    async def fail(self, volume_id: str | None, error: str) -> None:
        if self.checkpoint is not None:
            self.checkpoint.record_failure(volume_id, error)

    async def flush(self) -> None:
        self.writer.flush()

    async def aclose(self) -> None:
        self.writer.flush()
