"""Fixtures for the sinks: a real PostgreSQL server per session, a fresh database per test, tiny filesystems."""

# Fixed argument lists of trusted system tools (initdb, postgres, mount):
# ruff: noqa: S603, S607

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from snapcrawl._models import Page, Snapshot
from snapcrawl.sinks import PostgresSink, SqliteSink, sqlite_path

from .pgserver import postgres_bindir, temporary_server

PASSWORD = "pg-secret-7f3a"  # the test server's own superuser password, used only on 127.0.0.1


def snapshots(volume: str, count: int, *, start: int = 0, size: int = 1) -> list[Snapshot]:
    """``count`` snapshots of ``volume`` with ids ``{volume}-s{n}``, newest first as the API lists them."""
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        Snapshot(
            id=f"{volume}-s{n}",
            volume_id=volume,
            size=size * n,
            created_at=base + dt.timedelta(minutes=n),
            status="available",
            metadata={"n": n},
        )
        for n in range(start + count - 1, start - 1, -1)
    ]


def page(volume: str | None, number: int, items: list[Snapshot], *, last: bool = False) -> Page:
    """A page as the crawl run delivers it."""
    return Page(volume, number, items, last)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own (fsync off), on a free loopback port; yields the superuser's URL.

    Skipped outside CI when the binaries are missing; under ``CI`` a missing server is a failure.
    """
    if postgres_bindir() is None:
        reason = "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): install the Debian package postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with temporary_server(PASSWORD) as url:
        yield url


async def _create_database(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{server}/{name}"


async def _drop_database(url: str) -> None:
    server, _, name = url.rpartition("/")
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pg_url(postgres_server: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's server, dropped afterwards."""
    url = await _create_database(postgres_server)
    yield url
    await _drop_database(url)


@contextlib.contextmanager
def _tmpfs(options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny filesystem needs root")
    where = Path(tempfile.mkdtemp(prefix="snapcrawl-fs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True, timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)
        where.rmdir()


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 256 KiB filesystem, to fill up."""
    with _tmpfs("size=256k") as where:
        yield where


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """A filesystem holding ``inventory.db`` and ``out.jsonl``, remounted read-only (root writes nothing there)."""
    with _tmpfs("size=1m") as where:
        (where / "inventory.db").write_bytes(b"")
        (where / "out.jsonl").write_bytes(b"")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, timeout=30)
        yield where


class Inventory:
    """One database destination under test: opens sinks on it and queries it directly, without snapcrawl."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url

    def sink(self, **options: Any) -> SqliteSink | PostgresSink:
        """A new sink on this database (a new run), writing as account ``acct`` unless told otherwise."""
        options.setdefault("account", "acct")
        if self.kind == "sqlite":
            return SqliteSink(sqlite_path(self.url), **options)
        return PostgresSink(self.url, **options)

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a plain query, through the database's own driver."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(sqlite_path(self.url))) as db, db:
                return db.execute(sql).fetchall()
        conn = await asyncpg.connect(self.url)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def ids(self, table: str = "snapshots") -> list[str]:
        """Every id in the table, sorted, duplicates kept."""
        return sorted(row[0] for row in await self.query(f"SELECT id FROM {table}"))  # noqa: S608


@pytest.fixture(params=["sqlite", "postgres"])
async def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inventory]:
    """A fresh SQLite file, then a fresh PostgreSQL database: the same behaviour is expected of both."""
    if request.param == "sqlite":
        yield Inventory("sqlite", f"sqlite:///{tmp_path / 'inventory.db'}")
    else:
        url = await _create_database(request.getfixturevalue("postgres_server"))
        yield Inventory("postgres", url)
        await _drop_database(url)
