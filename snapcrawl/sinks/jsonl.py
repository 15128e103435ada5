"""JSON Lines output, resumable with a SQLite state file that commits after the output it covers.

The invariant: the state file's ``output_offset`` is a length of the output file at which every volume marked
``done`` is complete and every other volume is present exactly up to its recorded markers. Writers flush the
output first and commit the state second; a resumed crawl cuts the output back to ``output_offset``, so lines
written after the last commit (whose volumes the state does not cover) are written again, once. That holds
after ``kill -9`` at any moment: SQLite's WAL makes each commit atomic.

The state file is locked (``flock``) while it is open: a second run on it fails at once with
:class:`SinkError` instead of interleaving its records with the first run's. A record that failed is never
followed by a commit: the commit would cover lines whose progress was not recorded.

``delivered_ids`` scans the committed part of the output for the volume's lines (a resumed walk asks for it
only when its markers have all been deleted, which is rare): the output is the record, nothing is kept twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple, TypeVar

import anyio.to_thread
import msgspec

from .._exceptions import ConfigError, SinkError
from .._models import Snapshot
from ._base import VolumeProgress
from ._batch import Batch, BatchingSink
from ._lock import lock_file

if TYPE_CHECKING:
    from .._models import Page

__all__ = ["Checkpoint", "JsonLinesSink", "JsonLinesWriter", "VolumeState", "encode_snapshots"]

T = TypeVar("T")
_encoder: Final = msgspec.json.Encoder()
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS volumes (
    volume_id TEXT PRIMARY KEY,
    status    TEXT NOT NULL CHECK (status IN ('partial', 'done', 'failed')),
    marker    TEXT,
    pages     INTEGER NOT NULL DEFAULT 0,
    error     TEXT,
    markers   TEXT
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
#: The whole-account listing is checkpointed under this key.
ACCOUNT_KEY: Final = "*account*"


def encode_snapshots(snapshots: Sequence[Snapshot]) -> bytes:
    """Encode snapshots as JSON Lines: one object a line, each line ending in a newline."""
    return _encoder.encode_lines(snapshots)


class VolumeState(NamedTuple):
    """What a checkpoint knows of one volume: ``done``, ``partial`` or ``failed``, and the last id written."""

    status: str
    marker: str | None
    pages: int


class Checkpoint:
    """Per-volume progress of a crawl into one output file, in a locked SQLite database (WAL mode).

    ``settings`` (e.g. the endpoint, sort and name filter) are stored on first use; resuming with different ones
    is a :class:`ConfigError`, since markers only make sense in the same ordering. Open it with ``with``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, output: str | os.PathLike[str], settings: Mapping[str, object]
    ) -> None:
        self.path = Path(path)
        self.output = Path(output).resolve()
        self._lock = lock_file(self.path, destination=f"state file {self.path}")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(volumes)")}
            if "markers" not in columns:  # a state file from before fallback markers
                self._db.execute("ALTER TABLE volumes ADD COLUMN markers TEXT")
            self._check_meta("output", str(self.output))
            self._check_meta("settings", json.dumps(dict(settings), sort_keys=True, default=str))
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            os.close(self._lock)
            raise ConfigError(f"cannot use {self.path} as a state file: {exc}") from None
        except BaseException:
            os.close(self._lock)
            raise

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

    def progress(self) -> dict[str | None, VolumeProgress]:
        """Every volume's recorded progress, with its fallback markers (newest first)."""
        return {
            (None if volume == ACCOUNT_KEY else volume): VolumeProgress(
                status, tuple(json.loads(markers)) if markers else ((marker,) if marker else ()), pages
            )
            for volume, status, marker, markers, pages in self._db.execute(
                "SELECT volume_id, status, marker, markers, pages FROM volumes"
            )
        }

    def record_page(
        self,
        volume_id: str | None,
        marker: str | None,
        *,
        last: bool,
        markers: Sequence[str] | None = None,
        pages: int = 1,
    ) -> None:
        """Note that ``pages`` pages of the volume, the last ending at ``marker``, are written (until commit).

        ``markers`` are that page's ids newest first (``marker`` first), the fallbacks should ``marker`` vanish.
        """
        fallbacks = json.dumps(list(markers)) if markers else (json.dumps([marker]) if marker else None)
        self._db.execute(
            "INSERT INTO volumes (volume_id, status, marker, markers, pages) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (volume_id) DO UPDATE SET status = excluded.status, "
            "marker = coalesce(excluded.marker, volumes.marker), markers = coalesce(excluded.markers, "
            "volumes.markers), pages = volumes.pages + excluded.pages, error = NULL",
            (volume_id or ACCOUNT_KEY, "done" if last else "partial", marker, fallbacks, pages),
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

    def rollback(self) -> None:
        """Forget what was recorded since the last commit."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("BEGIN")

    def counts(self) -> dict[str, int]:
        """How many volumes are done, partial or failed."""
        return dict(self._db.execute("SELECT status, count(*) FROM volumes GROUP BY status").fetchall())

    def close(self) -> None:
        """Roll back what was not committed, close the database, and release the lock."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        self._db.close()
        os.close(self._lock)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class JsonLinesWriter:
    """Writes pages of snapshots to a binary file as JSON Lines, one ``write`` call per page (synchronous).

    With a :class:`Checkpoint`, each page is recorded there, and the checkpoint is committed (after the file
    is flushed) at most every ``commit_interval`` seconds and on :meth:`flush`; the output then resumes
    exactly where the checkpoint says. ``offset`` is the file position the writer started at. Once a record
    has failed, :meth:`flush` flushes the file but never commits again.
    """

    __slots__ = ("_broken", "_checkpoint", "_commit_interval", "_file", "_last_commit", "lines", "offset")

    def __init__(
        self,
        file: BinaryIO,
        *,
        checkpoint: Checkpoint | None = None,
        offset: int = 0,
        commit_interval: float = 0.5,
    ) -> None:
        self._file = file
        self._checkpoint = checkpoint
        self._commit_interval = commit_interval
        self._last_commit = time.monotonic()
        self._broken = False
        self.offset = offset
        self.lines = 0

    def write(self, snapshots: Sequence[Snapshot]) -> None:
        """Append ``snapshots``, one line each."""
        if snapshots:
            data = _encoder.encode_lines(snapshots)
            self._file.write(data)
            self.offset += len(data)
            self.lines += len(snapshots)

    def write_page(self, page: Page) -> None:
        """Append a page's snapshots and, with a checkpoint, record the page."""
        self.write(page.snapshots)
        if self._checkpoint is not None:
            try:
                self._checkpoint.record_page(
                    page.volume_id,
                    page.marker,
                    last=page.last,
                    markers=[snapshot.id for snapshot in reversed(page.snapshots)],
                )
            except BaseException:
                self._broken = True  # the lines above are not recorded: no commit may cover them
                raise
            if time.monotonic() - self._last_commit >= self._commit_interval:
                self.flush()

    def flush(self) -> None:
        """Push buffered lines to the operating system, then commit the checkpoint that covers them."""
        self._file.flush()
        if self._checkpoint is not None and not self._broken:
            self._checkpoint.commit(self.offset)
            self._last_commit = time.monotonic()


class _Line(msgspec.Struct):
    id: str
    volume_id: str


class JsonLinesSink(BatchingSink):
    """A :class:`~snapcrawl.sinks.Sink` writing JSON Lines to ``out`` (a path, or ``"-"`` for stdout).

    Without ``state`` the file is written from scratch and nothing resumes. With ``state`` (a SQLite file) the
    output is appended to, cut back to what the state covers, and each commit records the pages it wrote after
    the output is flushed. ``settings`` identify the crawl: a state file of another crawl is a
    :class:`ConfigError`. Every page's lines are written as they arrived (no upsert: duplicates are the crawl's
    business). ``complete`` leaves the state as it is: the file holds one crawl, and running it again skips
    what is done.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        state: str | os.PathLike[str] | None = None,
        settings: Mapping[str, object] | None = None,
        batch_rows: int = 5_000,
        max_rows: int = 20_000,
        commit_interval: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.stdout = str(out) == "-"
        if self.stdout and state is not None:
            raise ConfigError(
                "{state} needs {out} to be a file: a resumed crawl appends to it", options=("state", "out")
            )
        super().__init__(
            "stdout" if self.stdout else str(out),
            batch_rows=batch_rows,
            max_rows=max_rows,
            commit_interval=commit_interval,
            **({"clock": clock} if clock else {}),
        )
        self.out = out
        self.state = state
        self.resumable = state is not None
        self.settings = dict(settings or {})
        #: The committed length of the output (where a resumed crawl would start).
        self.offset = 0
        self._file: BinaryIO | None = None
        self._checkpoint: Checkpoint | None = None
        #: A regular file and no state: lines are written as pages arrive, with no batch (see :meth:`write`).
        self._direct = not self.stdout and state is None

    async def _open(self) -> Mapping[str | None, VolumeProgress]:
        return await self._run(self._open_sync)

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call)
        except (OSError, sqlite3.Error) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SinkError(text, destination=self.destination) from None

    def _open_sync(self) -> dict[str | None, VolumeProgress]:
        if self.stdout:
            self._file = sys.stdout.buffer
            return {}
        if self.state is None:
            try:
                self._file = open(self.out, "wb")  # noqa: SIM115 - closed by aclose
            except OSError as exc:
                raise SinkError(f"cannot write: {exc.strerror}", destination=self.destination) from None
            return {}
        self._checkpoint = Checkpoint(self.state, output=self.out, settings=self.settings)
        try:
            self._file = self._checkpoint.open_output()
        except BaseException:
            self._checkpoint.close()
            self._checkpoint = None
            raise
        self.offset = self._checkpoint.output_offset
        return self._checkpoint.progress()

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """Open the output (and the state file) and return what earlier runs committed."""
        return await super().load_progress()

    async def write(self, page: Page) -> None:
        """Take a page: into a regular file with no state file, written at once; otherwise batched as usual.

        With no state there is nothing to commit together with the lines, so they go straight into the file's
        buffer (the operating system sees 64 KiB at a time, a page-cache write far under 100 us), as fast as the
        crawl can decode them. A pipe (stdout) may block for as long as its reader likes: it stays batched and
        written from a worker thread.
        """
        if not self._direct:
            await super().write(page)
            return
        if not self._opened:
            await self._ensure_open()
        if page.snapshots:
            file = self._file
            assert file is not None  # noqa: S101 - opened above
            data = _encoder.encode_lines(page.snapshots)
            try:
                file.write(data)
            except OSError as exc:
                raise SinkError(f"cannot write: {exc.strerror}", destination=self.destination) from None
            self.offset += len(data)
            self.rows += len(page.snapshots)

    async def _commit_batch(self, batch: Batch) -> None:
        await self._run(lambda: self._commit_sync(batch))

    def _commit_sync(self, batch: Batch) -> None:
        file, checkpoint = self._file, self._checkpoint
        assert file is not None  # noqa: S101 - opened first
        data = b"".join(_encoder.encode_lines(page.snapshots) for page in batch.pages if page.snapshots)
        try:
            file.write(data)
            file.flush()  # the output first, then the state that covers it
            if checkpoint is not None:
                for volume, step in batch.steps.items():
                    if step.pages:
                        checkpoint.record_page(
                            volume,
                            step.markers[0] if step.markers else None,
                            last=step.status == "done",
                            markers=step.markers,
                            pages=step.pages,
                        )
                    if step.status == "failed":
                        checkpoint.record_failure(volume, step.error or "failed")
                checkpoint.commit(self.offset + len(data))
        except BaseException:
            if checkpoint is not None:
                checkpoint.rollback()
            raise
        self.offset += len(data)

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """The ids in the committed output for ``volume_id`` (every id, for the account-wide listing)."""
        await self._ensure_open()
        if self.stdout or self.state is None:
            return set()
        decoder = msgspec.json.Decoder(_Line)

        def scan() -> set[str]:
            ids: set[str] = set()
            left = self.offset  # committed lines only; read a line at a time, however large the output
            with open(self.out, "rb") as file:
                for number, line in enumerate(file, 1):
                    if left <= 0:
                        break
                    left -= len(line)
                    try:
                        item = decoder.decode(line)
                    except msgspec.DecodeError:
                        raise SinkError(f"line {number} is not a snapshot", destination=self.destination) from None
                    if volume_id is None or item.volume_id == volume_id:
                        ids.add(item.id)
            return ids

        async with self._lock:
            return await anyio.to_thread.run_sync(scan)

    async def _finish(self) -> None:
        return None

    async def _close(self) -> None:
        def close() -> None:
            file, checkpoint, self._file, self._checkpoint = self._file, self._checkpoint, None, None
            try:
                if file is not None and not self.stdout:
                    file.close()  # flushes what is buffered: a full disk shows here
            finally:
                if checkpoint is not None:
                    checkpoint.close()

        await self._run(close)  # an OSError (the disk is full) becomes a SinkError
