"""End to end: crawls of the simulator into real databases, through the sink seam (tests.sinks.driver)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from snapcrawl import Crawler
from snapcrawl.simulator import Churn, Faults, Simulator, run_in_thread
from snapcrawl.sinks import SqliteSink, open_sink

from .driver import crawl_into_sink, crawl_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def living_simulator() -> Iterator[Simulator]:
    """60 volumes whose snapshots are deleted and created while they are listed (the next marker too)."""
    churn = Churn(rate=0.5, deletes=1, creates=1, marker_share=0.25)
    with run_in_thread(volumes=60, seed=11, faults=Faults(churn=churn)) as sim:
        yield sim


@pytest.fixture(scope="module")
def slow_simulator() -> Iterator[Simulator]:
    """800 volumes answering in 10-30 ms, so that a crawl lasts long enough to be killed."""
    with run_in_thread(volumes=800, seed=23, faults=Faults(latency=(0.01, 0.03))) as sim:
        yield sim


async def _crawl(sim: Simulator, out: str, *, prune: bool) -> None:
    crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=8)
    sink = open_sink(out, prune=prune, settings=crawl_settings(sim.url), batch_rows=200)
    result = await crawl_into_sink(crawler, sim.dataset.volume_ids, sink)
    assert result.failures == []


async def test_two_crawls_with_prune_give_the_current_inventory(living_simulator: Simulator, tmp_path: Path) -> None:
    """After a crawl and a pruning re-crawl, the table holds exactly the snapshots that could still exist."""
    sim, db = living_simulator, tmp_path / "inventory.db"
    out = f"sqlite:///{db}"
    await _crawl(sim, out, prune=False)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        first = {row[0] for row in conn.execute("SELECT id FROM snapshots")}
    since = sim.dataset.mark()
    await _crawl(sim, out, prune=True)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT id, volume_id FROM snapshots").fetchall()
        assert conn.execute("SELECT count(*) FROM snapcrawl_progress").fetchone() == (0,)  # finished
    ids = Counter(snapshot_id for snapshot_id, _ in rows)
    assert max(ids.values()) == 1
    volume_of = dict(rows)
    for volume in sim.dataset.volume_ids:
        for snapshot_id in sim.dataset.existed_throughout(since, volume):
            assert volume_of.get(snapshot_id) == volume, snapshot_id
    possible = sim.dataset.ever_existed(since)
    deleted_before = first - possible
    assert deleted_before  # the churn of the first crawl did delete some
    assert not deleted_before & set(ids)
    assert set(ids) <= possible


async def _progress_rows(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('snapcrawl_progress')") is None:
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM snapcrawl_progress"))
    finally:
        await conn.close()


async def test_killed_crawl_into_postgres_resumes_with_each_snapshot_once(
    slow_simulator: Simulator, pg_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-crawl, run again: every snapshot once; a third identical run leaves the row count as it is."""
    sim = slow_simulator
    volumes = tmp_path / "volumes.txt"
    volumes.write_text("\n".join(sim.dataset.volume_ids) + "\n", encoding="utf-8")
    argv = [sys.executable, "-m", "tests.sinks.driver", sim.url, pg_url, "--volumes", str(volumes)]
    env = os.environ | {"SCP_ACCESS_KEY": sim.credentials.access_key, "SCP_SECRET_KEY": sim.credentials.secret_key}

    process = await anyio.open_process(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    async with process:
        with anyio.fail_after(25):
            while await _progress_rows(pg_url) < 30 and process.returncode is None:  # noqa: ASYNC110 - another process
                await anyio.sleep(0.05)
        assert process.returncode is None, "the crawl ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
    assert await _progress_rows(pg_url) > 0

    for _ in range(2):  # run again to the end, then once more
        done = await anyio.run_process(argv, cwd=REPO, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        conn = await asyncpg.connect(pg_url)
        try:
            count, distinct = await conn.fetchrow("SELECT count(*), count(DISTINCT id) FROM snapshots")
        finally:
            await conn.close()
        assert count == distinct == sim.dataset.total
    assert await _progress_rows(pg_url) == 0


async def test_interrupted_json_lines_crawl_resumes_with_each_snapshot_once(
    living_simulator: Simulator, tmp_path: Path
) -> None:
    """A JSON Lines crawl with a state file, cancelled after its first commit and run again, lists each id once."""
    sim, out, state = living_simulator, tmp_path / "out.jsonl", tmp_path / "state.db"
    settings = crawl_settings(sim.url)
    since = sim.dataset.mark()
    first = open_sink(str(out), state=str(state), settings=settings, batch_rows=50)
    heard: list[str | None] = []
    with anyio.CancelScope() as scope:

        async def stop_after_first_commit(volumes: object) -> None:
            assert isinstance(volumes, list)
            heard.extend(volumes)
            scope.cancel()

        first.on_commit = stop_after_first_commit
        await crawl_into_sink(
            Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=8), sim.dataset.volume_ids, first
        )
    assert scope.cancelled_caught
    assert heard
    check = open_sink(str(out), state=str(state), settings=settings)
    progress = await check.load_progress()
    await check.aclose()
    assert 0 < sum(p.status == "done" for p in progress.values()) < len(sim.dataset.volume_ids)

    again = open_sink(str(out), state=str(state), settings=settings, batch_rows=50)
    await crawl_into_sink(
        Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=8), sim.dataset.volume_ids, again
    )
    ids = Counter(line.split(b'"id":"', 1)[1].split(b'"', 1)[0] for line in out.read_bytes().splitlines())
    assert max(ids.values()) == 1
    assert {i.encode() for i in sim.dataset.existed_throughout(since)} <= set(ids)


async def test_account_wide_crawls_with_prune_into_sqlite(living_simulator: Simulator, tmp_path: Path) -> None:
    """The account-wide listing, walked by marker into a resumable sink, prunes the whole table when it ends."""
    sim, db = living_simulator, tmp_path / "inventory.db"
    settings = crawl_settings(sim.url)
    tables: list[set[str]] = []
    for prune in (False, True):
        since = sim.dataset.mark()
        sink = open_sink(f"sqlite:///{db}", prune=prune, settings=settings, batch_rows=200)
        result = await crawl_into_sink(Crawler(endpoint=sim.url, credentials=sim.credentials), None, sink)
        assert result.failures == []
        with contextlib.closing(sqlite3.connect(db)) as conn:
            ids = Counter(row[0] for row in conn.execute("SELECT id FROM snapshots"))
        assert max(ids.values()) == 1
        tables.append(set(ids))
    assert sim.dataset.existed_throughout(since) <= tables[1] <= sim.dataset.ever_existed(since)
    assert isinstance(sink, SqliteSink) and sink.pruned == len(tables[0] - tables[1])  # what crawl 2 did not see
