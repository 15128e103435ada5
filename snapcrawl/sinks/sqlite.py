"""An inventory in SQLite (stdlib ``sqlite3``, each call off the event loop): upserts in batches, checkpoint inside.

Rows and the checkpoint that covers them are written in one transaction (WAL mode, ``synchronous=NORMAL``:
a commit survives the process being killed), so a crawl killed at any moment and run again resumes where the
database says and writes every snapshot once. The checkpoint lives in two tables of the same database,
``snapcrawl_crawls`` (one row per unfinished crawl: its settings and start time) and ``snapcrawl_progress``
(one row per volume). Timestamps are ISO 8601 text in UTC with a fixed width, so that they sort as text.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, TypeVar, cast

import anyio.to_thread
import msgspec

from .._exceptions import SinkError
from .._models import Snapshot
from ._base import VolumeProgress
from ._batch import Batch
from ._inventory import InventorySink
from ._lock import lock_file
from ._migrate import ACCOUNT_COLUMNS, sqlite_check_account, sqlite_check_checkpoint
from ._ranges import sqlite_create, sqlite_delete, sqlite_load, sqlite_write
from ._runs import RunRecord, sqlite_begin, sqlite_end
from ._table import COLUMNS, DEFAULT_TABLE, check_fits, utc_text

__all__ = ["SqliteSink"]

T = TypeVar("T")

#: Declared column types: SQLite keeps them as written, and this is how an existing table is checked.
TYPES: Final = {
    "id": "TEXT",
    "volume_id": "TEXT",
    "size": "INTEGER",
    "created_at": "TIMESTAMP",
    "updated_at": "TIMESTAMP",
    "status": "TEXT",
    "name": "TEXT",
    "description": "TEXT",
    "metadata": "JSON",
    "user_id": "TEXT",
    "crawled_at": "TIMESTAMP",
}
_NOT_NULL: Final = frozenset({"id", "volume_id", "size", "created_at", "crawled_at"})
_CHECKPOINT: Final = (
    """
CREATE TABLE IF NOT EXISTS snapcrawl_crawls (
    crawl      TEXT PRIMARY KEY,
    started_at TIMESTAMP NOT NULL,
    account    TEXT NOT NULL
)""",
    """
CREATE TABLE IF NOT EXISTS snapcrawl_progress (
    crawl   TEXT NOT NULL,
    volume  TEXT NOT NULL,
    status  TEXT NOT NULL CHECK (status IN ('partial', 'done', 'failed')),
    markers JSON NOT NULL,
    pages   INTEGER NOT NULL,
    error   TEXT,
    PRIMARY KEY (crawl, volume)
)""",
)
_json: Final = msgspec.json.Encoder()
ACCOUNT: Final = ""  # the account-wide listing's key (volume ids are never empty)
#: How long a statement waits for another connection's write lock before "database is locked".
_BUSY_SECONDS: Final = 10.0


def _rows(snapshots: list[Snapshot], crawled_at: str) -> list[tuple[object, ...]]:
    """The table's rows, built for speed (about 3 us a row): metadata encoded in one call, UTC inline."""
    metadata = _json.encode_lines([snapshot.metadata for snapshot in snapshots]).decode().split("\n")
    utc = dt.UTC
    return [
        (
            s.id,
            s.volume_id,
            s.size,
            c.isoformat(timespec="microseconds") if (c := s.created_at).tzinfo is utc else utc_text(c),
            None
            if (u := s.updated_at) is None
            else u.isoformat(timespec="microseconds")
            if u.tzinfo is utc
            else utc_text(u),
            s.status,
            s.name,
            s.description,
            None if m == "null" else m,
            s.user_id,
            crawled_at,
        )
        for s, m in zip(snapshots, metadata, strict=False)  # encode_lines ends with a newline: one more item
    ]


class SqliteSink(InventorySink):
    """Upserts snapshots into ``table`` of the SQLite database at ``path``, committing progress with them.

    ``prune``, ``settings``, ``pruned`` and ``started_at`` are :class:`InventorySink`'s. One run at a time per
    database file (a second fails at once with :class:`SinkError`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        prune: bool = False,
        settings: Mapping[str, object] | None = None,
        batch_rows: int = 5_000,
        max_rows: int = 20_000,
        commit_interval: float = 0.5,
        clock: Callable[[], float] | None = None,
        now: Callable[[], dt.datetime] | None = None,
        account: str | None = None,
        endpoint: str | None = None,
        lock: bool = True,
    ) -> None:
        self.path = Path(path)
        #: Whether to take the file's lock; ``False`` when the caller holds it for several sinks (a fleet).
        self.lock = lock
        super().__init__(
            f"sqlite:///{self.path}",
            table=table,
            prune=prune,
            settings=settings,
            batch_rows=batch_rows,
            max_rows=max_rows,
            commit_interval=commit_interval,
            clock=clock,
            now=now,
            account=account,
            endpoint=endpoint,
        )
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        updates = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
        # executemany in a worker thread: SQLite does its part with the GIL released, so the crawl goes on.
        columns = (*COLUMNS, *ACCOUNT_COLUMNS)  # each row's account and endpoint follow the snapshot's fields
        self._upsert = (
            f"INSERT INTO {self._q} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "  # noqa: S608
            f"ON CONFLICT (account, id) DO UPDATE SET {updates}"
        )

    async def _run(self, call: Callable[[], T]) -> T:
        """Run a blocking database call in a worker thread; map SQLite's errors to :class:`SinkError`."""
        try:
            return await anyio.to_thread.run_sync(call)
        except sqlite3.Error as exc:
            raise SinkError(_explain(exc), destination=self.destination) from None

    async def _open(self) -> Mapping[str | None, VolumeProgress]:
        return await self._run(self._open_sync)

    def _open_sync(self) -> dict[str | None, VolumeProgress]:
        try:
            return self._open_checked()
        except BaseException:
            self._close_sync()
            raise

    def _open_checked(self) -> dict[str | None, VolumeProgress]:
        self._need_account()
        if sqlite3.sqlite_version_info < (3, 24):
            raise SinkError(
                f"SQLite {sqlite3.sqlite_version} is too old: 3.24 or later is needed (upserts)",
                destination=self.destination,
            )
        if self.lock:
            self._lock_fd = lock_file(self.path, destination=self.destination)
        self._db = db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS)
        # A new database gets 8 KiB pages (rows are about 400 bytes): about 25% less CPU a row than 4 KiB; an
        # existing one keeps its own. 32 MiB of cache holds the id and volume_id indexes: about 10% less again.
        db.execute("PRAGMA page_size=8192")
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-32768")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _CHECKPOINT:
                db.execute(statement)
            sqlite_create(db)
            sqlite_check_checkpoint(db, self.destination)
            self._ensure_table(db)
            row = db.execute("SELECT started_at FROM snapcrawl_crawls WHERE crawl = ?", (self._key,)).fetchone()
            if row is None:
                self.started_at = self._now()
                db.execute(
                    "INSERT INTO snapcrawl_crawls (crawl, started_at, account) VALUES (?, ?, ?)",
                    (self._key, utc_text(self.started_at), self.account),
                )
            else:
                self.started_at = dt.datetime.fromisoformat(row[0])
            progress: dict[str | None, VolumeProgress] = {
                volume or None: VolumeProgress(status, tuple(json.loads(markers)), pages)
                for volume, status, markers, pages in db.execute(
                    "SELECT volume, status, markers, pages FROM snapcrawl_progress WHERE crawl = ?", (self._key,)
                )
            }
            self.ranges = sqlite_load(db, self._key)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return progress

    def _ensure_table(self, db: sqlite3.Connection) -> None:
        """Create the table when missing; otherwise check that its columns fit (never altering it)."""
        found = {
            name: (kind.upper(), notnull, pk)
            for _, name, kind, notnull, _, pk in db.execute(f"PRAGMA table_info({self._q})")
        }
        if not found:
            columns = ", ".join(
                f"{column} {kind}" + (" NOT NULL" if column in _NOT_NULL or column == "id" else "")
                for column, kind in TYPES.items()
            )
            db.execute(
                f"CREATE TABLE {self._q} ({columns}, account TEXT NOT NULL, endpoint TEXT NOT NULL, "
                "PRIMARY KEY (account, id))"
            )
            db.execute(f'CREATE INDEX "{self.table}_account_volume_idx" ON {self._q} (account, volume_id)')
            return
        problems = [
            f"{column} is {found[column][0] or 'untyped'}, not {kind}" if column in found else f"{column} is missing"
            for column, kind in TYPES.items()
            if column not in found or found[column][0] != kind
        ]
        if not problems:  # a snapshots table, but of snapcrawl 0.2? Then the error names the migration.
            sqlite_check_account(found, self.table, self.destination)
        if {name for name, (_, _, pk) in found.items() if pk} != {"account", "id"}:
            problems.append("(account, id) is not its primary key")
        check_fits(self.table, problems, self.destination)

    async def _commit_batch(self, batch: Batch) -> None:
        self.pruned += await self._run(lambda: self._commit_sync(batch))

    def _commit_sync(self, batch: Batch) -> int:
        db, started = cast(sqlite3.Connection, self._db), cast(dt.datetime, self.started_at)
        crawled_at = cast(str, utc_text(max(self._now(), started)))
        pruned = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            account, endpoint = self.account, self.endpoint
            rows = _rows(list(batch.latest().values()), crawled_at)
            db.executemany(self._upsert, [(*row, account, endpoint) for row in rows])
            db.executemany(
                "INSERT INTO snapcrawl_progress (crawl, volume, status, markers, pages, error) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (crawl, volume) DO UPDATE SET status = excluded.status, "
                "markers = CASE WHEN excluded.markers = 'null' THEN snapcrawl_progress.markers "
                "ELSE excluded.markers END, pages = snapcrawl_progress.pages + excluded.pages, error = excluded.error",
                [
                    (self._key, volume or ACCOUNT, step.status, json.dumps(step.markers), step.pages, step.error)
                    for volume, step in batch.steps.items()
                ],
            )
            sqlite_write(db, self._key, batch.ranges)
            if self.prune:
                since = utc_text(started)
                for volume in batch.completed:
                    if volume is None:
                        cursor = db.execute(
                            f"DELETE FROM {self._q} WHERE account = ? AND crawled_at < ?",  # noqa: S608
                            (account, since),
                        )
                    else:
                        cursor = db.execute(
                            f"DELETE FROM {self._q} WHERE account = ? AND volume_id = ? AND crawled_at < ?",  # noqa: S608
                            (account, volume, since),
                        )
                    pruned += cursor.rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return pruned

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """The ids this crawl committed for ``volume_id`` (the whole table's, for the account)."""
        await self._ensure_open()
        since = utc_text(self.started_at)

        def query() -> set[str]:
            db = cast(sqlite3.Connection, self._db)
            if volume_id is None:
                rows = db.execute(
                    f"SELECT id FROM {self._q} WHERE account = ? AND crawled_at >= ?",  # noqa: S608
                    (self.account, since),
                )
            else:
                rows = db.execute(
                    f"SELECT id FROM {self._q} WHERE account = ? AND volume_id = ? AND crawled_at >= ?",  # noqa: S608
                    (self.account, volume_id, since),
                )
            return {row[0] for row in rows}

        async with self._lock:
            return await self._run(query)

    async def _finish(self) -> None:
        def finish() -> None:
            db = cast(sqlite3.Connection, self._db)
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM snapcrawl_progress WHERE crawl = ?", (self._key,))
                sqlite_delete(db, self._key)
                db.execute("DELETE FROM snapcrawl_crawls WHERE crawl = ?", (self._key,))

        await self._run(finish)

    def abandon(self) -> int:
        """Give up as :meth:`BatchingSink.abandon` does, and interrupt SQLite's call in progress (waiting for another
        program's lock, say), which a worker thread cannot be cancelled out of; its transaction is rolled back."""
        uncommitted = super().abandon()
        if self._db is not None:
            self._db.interrupt()
        return uncommitted

    async def _begin_run(self, started_at: dt.datetime) -> int:
        db, account = cast(sqlite3.Connection, self._db), self._need_account()
        return await self._run(
            lambda: sqlite_begin(db, account=account, endpoint=self.endpoint, table=self.table, started_at=started_at)
        )

    async def _end_run(self, run: int, record: RunRecord) -> None:
        db = cast(sqlite3.Connection, self._db)
        await self._run(lambda: sqlite_end(db, run, record))

    async def _close(self) -> None:
        await anyio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _use_wal(db: sqlite3.Connection, *, patience: float = _BUSY_SECONDS) -> None:
    """Put the database in WAL mode (readers never wait for the writer), unless it is already.

    Switching needs the file to itself, and there SQLite answers "database is locked" at once instead of waiting
    out its busy timeout: a fleet's accounts opening one new file together would fail all but one. Retried as
    the busy timeout would, for up to ``patience`` seconds.
    """
    if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    give_up = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.005)
        else:
            return


def _explain(exc: sqlite3.Error) -> str:
    """SQLite's message, with what it usually means here."""
    text = str(exc)
    if "readonly" in text:
        return f"{text}: the database file or its directory is read-only"
    if "full" in text:
        return f"{text}: the disk is full; what was committed before is kept, run again to resume"
    if "locked" in text or "busy" in text:
        return f"{text}: another program holds a write lock on it"
    if "unable to open" in text:
        return f"{text}: check that its directory exists and is writable"
    return text
