"""Fixtures for the sinks: a real PostgreSQL server per session, a fresh database per test, tiny filesystems."""

# Fixed argument lists of trusted system tools (initdb, postgres, mount):
# ruff: noqa: S603, S607

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from snapcrawl._models import Page, Snapshot
from snapcrawl.sinks import PostgresSink, SqliteSink, sqlite_path

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


def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own (fsync off), on a free loopback port; yields the superuser's URL.

    Skipped outside CI when the binaries are missing; under ``CI`` a missing server is a failure.
    """
    bindir = _postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): install the Debian package postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="snapcrawl-pg-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if as_postgres:
            shutil.chown(base, "postgres", "postgres")
        (base / "pwfile").write_text(PASSWORD + "\n", encoding="utf-8")
        if as_postgres:
            shutil.chown(base / "pwfile", "postgres", "postgres")
        subprocess.run(
            [*as_postgres, str(bindir / "initdb"), "-D", str(base / "data"), "-U", "snapcrawl", "--pwfile",
             str(base / "pwfile"), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        port = _free_port()
        process = subprocess.Popen(
            [*as_postgres, str(bindir / "postgres"), "-D", str(base / "data"), "-p", str(port), "-k", str(base),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=50"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False, timeout=30
            )
            if ready.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start (exit code {process.poll()})")
            time.sleep(0.1)
        yield f"postgresql://snapcrawl:{PASSWORD}@127.0.0.1:{port}"
    finally:
        if process is not None:
            # Through pg_ctl: runuser does not pass a signal on to the server it started.
            subprocess.run(
                [*as_postgres, str(bindir / "pg_ctl"), "stop", "-D", str(base / "data"), "-m", "immediate", "-s"],
                check=False,
                capture_output=True,
                timeout=60,
            )
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)


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
        """A new sink on this database (a new run)."""
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
