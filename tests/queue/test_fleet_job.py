"""A fleet's distributed job: two workers share each account's queue; every account's volumes, in one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from snapcrawl import Credentials
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from tests.redis_server import RedisServer

from .test_job_processes import database, postgres  # noqa: F401 - fixtures: a PostgreSQL server, a fresh database

KEYS = {
    "a": Credentials(access_key="AK-job-a", secret_key="sa"),
    "b": Credentials(access_key="AK-job-b", secret_key="sb"),
}


@pytest.fixture(scope="module")
def fleet_accounts() -> Iterator[dict[str, Simulator]]:
    slow = Faults(latency=(0.005, 0.01))
    with (
        run_in_thread(volumes=40, seed=31, credentials=KEYS["a"], faults=slow) as a,
        run_in_thread(volumes=40, seed=32, credentials=KEYS["b"], faults=slow) as b,
    ):
        yield {"a": a, "b": b}


@pytest.mark.timeout(120)
async def test_two_workers_crawl_a_fleet_job(
    fleet_accounts: dict[str, Simulator],
    redis_server: RedisServer,
    database: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    config = tmp_path / "fleet.toml"
    text = ""
    for name, sim in fleet_accounts.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(sim.dataset.volume_ids) + "\n", encoding="utf-8")
        (tmp_path / f"{name}.json").write_text(
            json.dumps({"access-key": KEYS[name].access_key, "secret-key": KEYS[name].secret_key}), encoding="utf-8"
        )
        text += f'[accounts.{name}]\nendpoint = "{sim.url}"\ncredentials_file = "{name}.json"\nvolumes = "{name}.txt"\n'
    config.write_text(text, encoding="utf-8")
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--config", str(config), "--out", database]
    argv += ["--queue", redis_server.url, "--job", "fleet-job", "--claim-after", "1", "--page-size", "5"]
    argv += ["--no-progress", "--concurrency", "2"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=os.environ.copy(), capture_output=True, text=True, timeout=90, check=False)  # noqa: S603

    results: list[subprocess.CompletedProcess[str]] = []

    async def worker() -> None:
        results.append(await anyio.to_thread.run_sync(run))

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "job fleet-job:a:" in result.stderr and "job fleet-job:b:" in result.stderr
    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetch("SELECT account, count(*), count(DISTINCT id) FROM snapshots GROUP BY account")
    finally:
        await conn.close()
    assert {row[0]: (row[1], row[2]) for row in rows} == {
        name: (sim.dataset.total, sim.dataset.total) for name, sim in fleet_accounts.items()
    }
