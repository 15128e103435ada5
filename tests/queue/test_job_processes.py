"""Three ``snapcrawl crawl --queue`` workers on one job into PostgreSQL, sharing one quota (``--limiter``); one is
killed with SIGKILL mid-job."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
import redis.asyncio

from snapcrawl.simulator import DEMO_CREDENTIALS, Faults, Simulator, run_in_thread
from tests.redis_server import RedisServer
from tests.sinks.pgserver import postgres_bindir, temporary_server

WORKERS = 3
VOLUMES = 90
PAGE_SIZE = 5


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of this module's own; skipped outside CI when its binaries are missing."""
    if postgres_bindir() is None:
        reason = "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): install the Debian package postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with temporary_server(uuid.uuid4().hex) as url:
        yield url


@pytest.fixture
async def database(postgres: str) -> AsyncIterator[str]:
    """A new database on the module's server, dropped afterwards."""
    name = f"job_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{postgres}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"{postgres}/{name}"
    admin = await asyncpg.connect(f"{postgres}/postgres")
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def slow_simulator() -> Iterator[Simulator]:
    """A simulator with some latency, so that a job takes a few seconds."""
    with run_in_thread(volumes=VOLUMES, seed=5, faults=Faults(latency=(0.01, 0.03))) as sim:
        yield sim


def _worker(sim: Simulator, redis_url: str, database: str, volume_file: Path, job: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    env |= {"SCP_ACCESS_KEY": DEMO_CREDENTIALS.access_key, "SCP_SECRET_KEY": DEMO_CREDENTIALS.secret_key}
    cmd = [
        sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes", str(volume_file),
        "--out", database, "--queue", redis_url, "--job", job, "--claim-after", "1", "--limiter", redis_url,
        "--page-size", str(PAGE_SIZE), "--concurrency", "4", "--no-progress", "--loop", "asyncio",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


@pytest.mark.timeout(240)
async def test_killed_worker_the_others_finish(
    slow_simulator: Simulator, redis_server: RedisServer, database: str, tmp_path: Path
) -> None:
    """Kill one of three workers with SIGKILL mid-job: the other two finish it, and the table holds every
    snapshot exactly once."""
    sim = slow_simulator
    volumes = sim.dataset.volume_ids
    expected = sorted(snap["id"] for volume in volumes for snap in sim.dataset.snapshots(volume))
    volume_file = tmp_path / "volumes.txt"
    volume_file.write_text("\n".join(volumes) + "\n")
    sim.stats.reset()
    job = f"nightly-{uuid.uuid4().hex[:8]}"
    workers = [_worker(sim, redis_server.url, database, volume_file, job) for _ in range(WORKERS)]
    try:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        stream = f"snapcrawl:job:{job}:stream"
        for _ in range(4000):  # until the job is under way and the first worker holds volumes (bounded: 200 s)
            holding = 0
            if await client.exists(stream):
                consumers = await client.xinfo_consumers(stream, "workers")
                holding = sum(c["pending"] for c in consumers if f":{workers[0].pid}:" in c["name"].decode())
            under_way = sim.stats.requests >= len(expected) // PAGE_SIZE // 4
            if (holding and under_way) or any(w.poll() is not None for w in workers):
                break
            await anyio.sleep(0.05)
        await client.aclose()
        assert all(w.poll() is None for w in workers), "the job ended before a worker could be killed"
        workers[0].send_signal(signal.SIGKILL)
        claimed = 0
        for worker in workers[1:]:
            with anyio.fail_after(200):
                while worker.poll() is None:  # noqa: ASYNC110 - a subprocess, with no event to wait on
                    await anyio.sleep(0.1)
            assert worker.stderr is not None
            err = worker.stderr.read().decode(errors="replace")
            assert worker.returncode == 0, err
            assert "paced through Redis" in err  # the shared limiter was in use too
            claimed += int(re.search(r"claimed (\d+)\)", err).group(1))  # type: ignore[union-attr]
        assert workers[0].wait() == -signal.SIGKILL
        assert claimed > 0  # the dead worker's volumes were taken over
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
            if worker.stderr:
                worker.stderr.close()
    db = await asyncpg.connect(database)
    try:
        rows = await db.fetch("SELECT id FROM snapshots ORDER BY id")
    finally:
        await db.close()
    assert [row["id"] for row in rows] == expected  # every snapshot, exactly once (id is the primary key)
    status = subprocess.run(  # noqa: S603, ASYNC221 - a short CLI call
        [sys.executable, "-m", "snapcrawl.cli", "job", "status", "--queue", redis_server.url, "--job", job],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert f"finished, keys expire in 7.0 d, {VOLUMES} volumes" in status
    assert f"done         {VOLUMES}" in status
