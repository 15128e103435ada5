"""``snapcrawl migrate``'s work: open a 0.2 table's database under the crawl's lock, and migrate it in place.

Apart from :mod:`._migrate` (the checks and the SQL, which the sinks import) so that nothing runs back up.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3

import anyio.to_thread

from .._exceptions import ConfigError, SinkError
from ._lock import lock_file
from ._migrate import pg_migrate, sqlite_migrate
from ._open import sqlite_path
from ._table import validate_table
from .postgres import redact

__all__ = ["migrate_table"]


async def migrate_table(out: str, *, table: str, account: str, endpoint: str) -> int:
    """Migrate ``table`` of the database ``out`` (``sqlite:///...`` or ``postgresql://...``); return the rows kept.

    Holds the same lock a crawl holds, so it never runs under one.
    """
    validate_table(table)
    scheme = out.partition("://")[0].lower()
    if scheme == "sqlite":
        path = sqlite_path(out)
        destination = f"sqlite:///{path}"

        def run() -> int:
            fd = lock_file(path, destination=destination)
            try:
                with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as db:
                    return sqlite_migrate(db, table, account=account, endpoint=endpoint)
            except sqlite3.Error as exc:
                raise SinkError(str(exc), destination=destination) from None
            finally:
                os.close(fd)

        return await anyio.to_thread.run_sync(run)
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"migrating needs a database {{out}} (sqlite:/// or postgresql://), not {out!r}", options=("out",)
        )
    try:
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:
        raise ConfigError("a postgresql:// destination needs asyncpg: pip install 'snapcrawl[postgres]'") from None
    destination = redact(out)
    try:
        conn = await asyncpg.connect(out, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SinkError(f"cannot connect: {exc}", destination=destination) from None
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"snapcrawl:{table}"):
            raise SinkError(f"table {table} is in use by a snapcrawl run; wait for it to end", destination=destination)
        return await pg_migrate(conn, table, account=account, endpoint=endpoint)
    except asyncpg.PostgresError as exc:
        raise SinkError(f"{type(exc).__name__}: {exc}", destination=destination) from None
    finally:
        await conn.close()
