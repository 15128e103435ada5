"""An inventory in PostgreSQL with asyncpg (the ``postgres`` extra): each batch one upsert of a JSON array.

Each batch is one transaction: the rows go in as one JSON array (msgspec encodes it in C; the server unpacks it
with ``json_to_recordset``, which took half the client CPU per row of a binary COPY into a staging table plus
an upsert from there), and the checkpoint that covers them is updated alongside, so a crawl killed at any moment
and run again writes every snapshot once. The checkpoint lives in ``snapcrawl_crawls`` and
``snapcrawl_progress`` of the same database. A session advisory lock per table keeps a second run out; the
server releases it when the connection ends, a killed client's included. The workers of one distributed job
(``shared``) hold that lock together: they keep a standalone run out, and are kept out by one.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import msgspec

from .._exceptions import BusyError, ConfigError, SinkError, UnfitValueError
from .._models import Snapshot
from ._base import VolumeProgress
from ._batch import Batch
from ._inventory import InventorySink
from ._migrate import pg_check_account, pg_check_checkpoint
from ._ranges import pg_create, pg_delete, pg_load, pg_write
from ._runs import RunRecord, pg_begin, pg_end
from ._table import COLUMNS, DEFAULT_TABLE, check_fits, nul_in

__all__ = ["PostgresSink", "check_dsn", "redact"]

T = TypeVar("T")

#: Column types as PostgreSQL's ``format_type`` spells them: how an existing table is checked.
TYPES: Final = {
    "id": "text",
    "volume_id": "text",
    "size": "bigint",
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
    "status": "text",
    "name": "text",
    "description": "text",
    "metadata": "jsonb",
    "user_id": "text",
    "crawled_at": "timestamp with time zone",
}
_NOT_NULL: Final = frozenset({"volume_id", "size", "created_at", "crawled_at"})
_CHECKPOINT: Final = (
    "CREATE TABLE IF NOT EXISTS snapcrawl_crawls (crawl text PRIMARY KEY, started_at timestamptz NOT NULL,"
    " account text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapcrawl_progress ("
    " crawl text NOT NULL, volume text NOT NULL,"
    " status text NOT NULL CHECK (status IN ('partial', 'done', 'failed')),"
    " markers text[] NOT NULL, pages integer NOT NULL, error text, PRIMARY KEY (crawl, volume))",
)
_json: Final = msgspec.json.Encoder()
ACCOUNT: Final = ""  # the account-wide listing's key (volume ids are never empty)


def redact(dsn: str) -> str:
    """The connection URL without its password (in the user part or as a ``password`` parameter).

    Never raises: a URL too broken to parse (an unclosed IPv6 bracket) is cut back by pattern instead, so that
    the error about it can be shown without the password.
    """
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return _PASSWORD_PARAM.sub("", _USER_PASSWORD.sub(r"\1@", dsn))
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_USER_PASSWORD: Final = re.compile(r"(//[^:/@]*):[^@]*@")
_PASSWORD_PARAM: Final = re.compile(r"[?&]password=[^&#]*")


def check_dsn(dsn: str) -> str:
    """``dsn`` if its host and port can be read, else a :class:`ConfigError` naming the problem (exit 2, before
    anything is fetched); the message shows the URL without its password."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        parts.port  # noqa: B018 - reading it is the check: a port that is not a number raises
    except ValueError as exc:
        raise ConfigError(f"invalid PostgreSQL URL {redact(dsn)!r}: {exc}") from None
    return dsn


def _import_asyncpg() -> Any:
    try:
        # Optional, untyped (no stubs): only PostgreSQL destinations need it.
        return importlib.import_module("asyncpg")
    except ImportError:
        raise ConfigError("a postgresql:// destination needs asyncpg: pip install 'snapcrawl[postgres]'") from None


class PostgresSink(InventorySink):
    """Upserts snapshots into ``table`` of the PostgreSQL database at ``dsn``, committing progress with them.

    ``dsn`` is any libpq URL (``postgresql://USER@HOST:PORT/DB``, ``?host=/socket/dir``...); the password comes
    from the URL, ``PGPASSWORD`` or ``~/.pgpass``, as asyncpg reads them. ``prune``, ``settings``, ``pruned`` and
    ``started_at`` are :class:`InventorySink`'s.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        prune: bool = False,
        settings: Mapping[str, object] | None = None,
        batch_rows: int = 5_000,
        max_rows: int = 20_000,
        commit_interval: float = 0.5,
        connect_timeout: float = 10.0,
        command_timeout: float = 120.0,
        clock: Callable[[], float] | None = None,
        now: Callable[[], dt.datetime] | None = None,
        shared: bool = False,
        account: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(
            redact(check_dsn(dsn)),
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
        self._asyncpg = _import_asyncpg()
        #: Whether the workers of a distributed job write the table together (they share its lock).
        self.shared = shared
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: Any | None = None
        q = self._q
        columns = ", ".join(COLUMNS)
        updates = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS[1:])
        record = ", ".join(f"{column} {kind}" for column, kind in TYPES.items() if column != "crawled_at")
        # The batch goes in as one JSON array: msgspec encodes it in C and the server parses it, so the client's
        # event loop (and its GIL) stays free for the crawl.
        self._upsert = (
            f"INSERT INTO {q} ({columns}, account, endpoint) "  # noqa: S608
            f"SELECT {', '.join(COLUMNS[:-1])}, $2::timestamptz, $3::text, $4::text "
            f"FROM json_to_recordset($1::json) AS r({record}) ON CONFLICT (account, id) DO UPDATE SET {updates}"
        )

    def unfit(self, snapshots: list[Snapshot]) -> UnfitValueError | None:
        """Besides sizes past 64 bits: a NUL anywhere, which neither text nor jsonb can hold."""
        return super().unfit(snapshots) or nul_in(snapshots, self.destination)

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await a database call; map asyncpg's and the network's errors to :class:`SinkError`."""
        asyncpg = self._asyncpg
        try:
            return await call()
        except SinkError:
            raise
        except asyncpg.InvalidPasswordError as exc:
            raise SinkError(f"credentials refused: {exc}", destination=self.destination) from None
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise SinkError(f"credentials refused: {exc}", destination=self.destination) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise SinkError(f"{type(exc).__name__}: {exc}", destination=self.destination) from None
        except TimeoutError:
            raise SinkError("no answer in time (unreachable or overloaded)", destination=self.destination) from None
        except OSError as exc:
            raise SinkError(f"cannot connect: {exc.strerror or exc}", destination=self.destination) from None

    @property
    def _db(self) -> Any:
        if self._conn is None:  # pragma: no cover - every caller opens first
            raise SinkError("not connected", destination=self.destination)
        return self._conn

    async def _open(self) -> Mapping[str | None, VolumeProgress]:
        self._need_account()
        self._conn = await self._call(
            lambda: self._asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout
            )
        )
        try:
            return await self._call(self._prepare)
        except BaseException:
            await self._close()
            raise

    async def _prepare(self) -> dict[str | None, VolumeProgress]:
        db = self._db
        lock = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        # One crawl of an account at a time: crawls of other accounts (a fleet's) write the same table alongside.
        if not await db.fetchval(
            f"SELECT {lock}(hashtextextended($1, 0))", f"snapcrawl:{self.table}:{self._need_account()}"
        ):
            raise BusyError(
                f"table {self.table} is in use by another snapcrawl run of account {self.account}; "
                "wait for it to end (or stop it)",
                destination=self.destination,
            )
        async with db.transaction():
            # Serialise schema creation between runs into different tables of one database.
            await db.execute("SELECT pg_advisory_xact_lock(hashtextextended('snapcrawl:schema', 0))")
            for statement in _CHECKPOINT:
                await db.execute(statement)
            await pg_create(db)
            await pg_check_checkpoint(db, self.destination)
            await self._ensure_table(db)
            started = await db.fetchval("SELECT started_at FROM snapcrawl_crawls WHERE crawl = $1", self._key)
            if started is None:
                started = self._now()
                await db.execute(
                    "INSERT INTO snapcrawl_crawls (crawl, started_at, account) VALUES ($1, $2, $3)",
                    self._key,
                    started,
                    self.account,
                )
            self.started_at = started
            rows = await db.fetch(
                "SELECT volume, status, markers, pages FROM snapcrawl_progress WHERE crawl = $1", self._key
            )
            self.ranges = await pg_load(db, self._key)
        return {
            row["volume"] or None: VolumeProgress(row["status"], tuple(row["markers"]), row["pages"]) for row in rows
        }

    async def _ensure_table(self, db: Any) -> None:
        """Create the table when missing; otherwise check that its columns fit (never altering it)."""
        found = {
            row["attname"]: row["type"]
            for row in await db.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
                "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                self._q,
            )
        }
        if not found:
            columns = ", ".join(
                f"{column} {kind}" + (" NOT NULL" if column in _NOT_NULL or column == "id" else "")
                for column, kind in TYPES.items()
            )
            await db.execute(
                f"CREATE TABLE {self._q} ({columns}, account text NOT NULL, endpoint text NOT NULL, "
                "PRIMARY KEY (account, id))"
            )
            await db.execute(f'CREATE INDEX "{self.table}_account_volume_idx" ON {self._q} (account, volume_id)')
            return
        problems = [
            f"{column} is {found[column]}, not {kind}" if column in found else f"{column} is missing"
            for column, kind in TYPES.items()
            if found.get(column) != kind
        ]
        if not problems:  # a snapshots table, but of snapcrawl 0.2? Then the error names the migration.
            pg_check_account(found, self.table, self.destination)
        primary = await db.fetchval(
            "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) WHERE i.indrelid = to_regclass($1) "
            "AND i.indisprimary",
            self._q,
        )
        if sorted(primary or []) != ["account", "id"]:
            problems.append("(account, id) is not its primary key")
        check_fits(self.table, problems, self.destination)

    async def _commit_batch(self, batch: Batch) -> None:
        self.pruned += await self._call(lambda: self._write(batch))

    async def _write(self, batch: Batch) -> int:
        db, started = self._db, self.started_at
        assert started is not None  # noqa: S101 - set when opened
        crawled_at = max(self._now(), started)
        latest = list(batch.latest().values())
        pruned = 0
        async with db.transaction():
            if latest:
                await db.execute(self._upsert, _json.encode(latest).decode(), crawled_at, self.account, self.endpoint)
            # One statement each, whatever the number of volumes: a round trip per volume would dominate.
            steps = [
                {"volume": volume or ACCOUNT, "status": step.status, "markers": step.markers, "pages": step.pages,
                 "error": step.error}
                for volume, step in batch.steps.items()
            ]  # fmt: skip
            await db.execute(
                "INSERT INTO snapcrawl_progress (crawl, volume, status, markers, pages, error) "
                "SELECT $1, volume, status, coalesce(markers, '{}'), pages, error FROM json_to_recordset($2::json) "
                "AS r(volume text, status text, markers text[], pages integer, error text) "
                "ON CONFLICT (crawl, volume) DO UPDATE SET status = excluded.status, markers = CASE WHEN "
                "excluded.markers = '{}' THEN snapcrawl_progress.markers ELSE excluded.markers END, "
                "pages = snapcrawl_progress.pages + excluded.pages, error = excluded.error",
                self._key,
                _json.encode(steps).decode(),
            )
            await pg_write(db, self._key, batch.ranges)
            if self.prune and (completed := batch.completed):
                if None in completed:
                    status = await db.execute(
                        f"DELETE FROM {self._q} WHERE account = $1 AND crawled_at < $2",  # noqa: S608
                        self.account,
                        started,
                    )
                else:
                    status = await db.execute(
                        f"DELETE FROM {self._q} WHERE account = $1 AND volume_id = ANY ($2::text[]) "  # noqa: S608
                        "AND crawled_at < $3",
                        self.account,
                        completed,
                        started,
                    )
                pruned += int(status.rpartition(" ")[2])
        return pruned

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """The ids this crawl committed for ``volume_id`` (the whole table's, for the account)."""
        await self._ensure_open()
        if volume_id is None:
            query = f"SELECT id FROM {self._q} WHERE account = $1 AND crawled_at >= $2"  # noqa: S608
            args: list[object] = [self.account, self.started_at]
        else:
            query = f"SELECT id FROM {self._q} WHERE account = $1 AND volume_id = $2 AND crawled_at >= $3"  # noqa: S608
            args = [self.account, volume_id, self.started_at]
        async with self._lock:
            rows = await self._call(lambda: self._db.fetch(query, *args))
        return {row[0] for row in rows}

    async def _finish(self) -> None:
        async def finish() -> None:
            async with self._db.transaction():
                await self._db.execute("DELETE FROM snapcrawl_progress WHERE crawl = $1", self._key)
                await pg_delete(self._db, self._key)
                await self._db.execute("DELETE FROM snapcrawl_crawls WHERE crawl = $1", self._key)

        await self._call(finish)

    async def _begin_run(self, started_at: dt.datetime) -> int:
        account = self._need_account()
        return await self._call(
            lambda: pg_begin(self._db, account=account, endpoint=self.endpoint, table=self.table, started_at=started_at)
        )

    async def _end_run(self, run: int, record: RunRecord) -> None:
        await self._call(lambda: pg_end(self._db, run, record))

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if self._broken is not None:  # a commit failed or was given up: the server rolls it back
                conn.terminate()
                return
            try:
                await conn.close(timeout=5)
            except Exception:  # a broken connection is closed the hard way
                conn.terminate()
