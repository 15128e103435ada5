"""A destination that fails: unreachable, credentials refused, read-only, full. Typed errors, nothing lost."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from pathlib import Path

import pytest

from snapcrawl import SinkError
from snapcrawl.sinks import JsonLinesSink, PostgresSink, SqliteSink

from .conftest import PASSWORD, page, snapshots


async def _fill(sink: SqliteSink | JsonLinesSink, volumes: int) -> None:
    """Write ``volumes`` complete volumes of 50 snapshots each."""
    for number in range(1, volumes + 1):
        await sink.write(page(f"v{number}", 1, snapshots(f"v{number}", 50, size=number), last=True))


async def test_bad_credentials_are_named_without_the_password(postgres_server: str) -> None:
    """A refused password is a SinkError naming the database, and the password appears nowhere."""
    url = postgres_server.replace(PASSWORD, "wrong-password-1234") + "/postgres"
    sink = PostgresSink(url, account="acct")
    with pytest.raises(SinkError, match="credentials refused") as caught:
        await sink.load_progress()
    await sink.aclose()
    assert "127.0.0.1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(sink)):
        assert "wrong-password-1234" not in text


async def test_unreachable_database_is_a_clear_error() -> None:
    """Nothing listening on the port: a SinkError saying it cannot connect, naming the destination."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        sink = PostgresSink(
            f"postgresql://crawler:s3cret@127.0.0.1:{port}/inventory", connect_timeout=5, account="acct"
        )
        with pytest.raises(SinkError, match="cannot connect") as caught:
            await sink.load_progress()
    assert f"postgresql://crawler@127.0.0.1:{port}/inventory" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_read_only_database_file(read_only_dir: Path) -> None:
    """A database on a read-only filesystem is refused before the crawl starts."""
    sink = SqliteSink(read_only_dir / "inventory.db", account="acct")
    with pytest.raises(SinkError, match="Read-only file system") as caught:
        await sink.load_progress()
    await sink.aclose()
    assert str(read_only_dir / "inventory.db") in str(caught.value)


async def test_read_only_output_file(read_only_dir: Path) -> None:
    """A JSON Lines output on a read-only filesystem is refused before the crawl starts."""
    sink = JsonLinesSink(read_only_dir / "out.jsonl")
    with pytest.raises(SinkError, match="cannot write"):
        await sink.load_progress()
    await sink.aclose()


async def test_full_disk_keeps_what_was_committed(tiny_disk: Path) -> None:
    """When the disk fills up, the sink fails with a SinkError, commits nothing more, and loses no commit."""
    path = tiny_disk / "inventory.db"
    sink = SqliteSink(path, batch_rows=50, max_rows=100, account="acct")
    await sink.load_progress()
    with pytest.raises(SinkError, match="full") as caught:
        await _fill(sink, 1000)
    assert str(path) in str(caught.value)
    committed = sink.rows
    assert committed > 0
    with pytest.raises(SinkError, match="earlier commit failed"):
        await sink.write(page("late", 1, snapshots("late", 1), last=True))
    await sink.aclose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM snapshots").fetchone() == (committed,)
        done = db.execute("SELECT count(*) FROM snapcrawl_progress WHERE status = 'done'").fetchone()[0]
    assert done * 50 == committed  # every committed volume has its rows, and no row lacks its progress


async def test_full_disk_for_json_lines(tiny_disk: Path, tmp_path: Path) -> None:
    """A full disk under the JSON Lines output is a SinkError; the state still covers only complete lines."""
    out = tiny_disk / "out.jsonl"
    sink = JsonLinesSink(out, state=tmp_path / "state.db", batch_rows=50, max_rows=100)
    await sink.load_progress()
    with pytest.raises(SinkError, match="No space left on device"):
        await _fill(sink, 10_000)
    committed = sink.offset
    await sink.aclose()
    assert out.stat().st_size >= committed
    assert out.read_bytes()[:committed].count(b"\n") == sink.rows
