"""Several ``snapcrawl crawl`` processes sharing one quota through Redis, also when Redis dies mid-crawl.

How close to the quota they get is measured in ``benchmarks/studies/redis_overhead.py``; these tests check that they
share it (together they send at about the quota, not four times it) and that every process completes its crawl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from snapcrawl.simulator import DEMO_CREDENTIALS, Faults, Simulator, run_in_thread
from tests.redis_server import RedisServer

PROCESSES = 4
VOLUMES = 80
QUOTA = 60.0
BURST = 10
PAGE_SIZE = 4


@pytest.fixture(scope="module")
def quota_simulator() -> Iterator[Simulator]:
    """A simulator answering 429 above QUOTA requests/s."""
    with run_in_thread(volumes=VOLUMES, seed=11, faults=Faults(rate_limit=QUOTA, rate_burst=BURST)) as sim:
        yield sim


def _start(sim: Simulator, redis_url: str, tmp_path: Path, index: int, volumes: list[str]) -> subprocess.Popen[bytes]:
    volume_file = tmp_path / f"volumes-{index}.txt"
    volume_file.write_text("\n".join(volumes) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    env |= {"SCP_ACCESS_KEY": DEMO_CREDENTIALS.access_key, "SCP_SECRET_KEY": DEMO_CREDENTIALS.secret_key}
    cmd = [
        sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes", str(volume_file),
        "--out", str(tmp_path / f"out-{index}.jsonl"), "--limiter", redis_url, "--rate", str(QUOTA),
        "--burst", str(BURST), "--page-size", str(PAGE_SIZE), "--concurrency", "8", "--no-progress",
        "--loop", "asyncio",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


def _check_complete(sim: Simulator, tmp_path: Path, shares: list[list[str]]) -> None:
    for index, volumes in enumerate(shares):
        lines = (tmp_path / f"out-{index}.jsonl").read_text().splitlines()
        got = [json.loads(line)["id"] for line in lines]
        expected = {snap["id"] for volume in volumes for snap in sim.dataset.snapshots(volume)}
        assert sorted(got) == sorted(expected), f"process {index}"


def _shares(sim: Simulator) -> list[list[str]]:
    """The volumes split into PROCESSES shares of about as many pages each, so that the crawls end together."""
    shares: list[list[str]] = [[] for _ in range(PROCESSES)]
    pages = [0] * PROCESSES
    for volume in sorted(sim.dataset.volume_ids, key=sim.dataset.count, reverse=True):
        least = pages.index(min(pages))
        shares[least].append(volume)
        pages[least] += sim.dataset.count(volume) // PAGE_SIZE + 1
    return shares


def _run(sim: Simulator, server: RedisServer, tmp_path: Path, *, kill_redis: bool) -> list[str]:
    """Run the crawls (killing Redis once all four share it, with ``kill_redis``); their stderr."""
    shares = _shares(sim)
    sim.stats.reset()
    procs = [_start(sim, server.url, tmp_path, index, share) for index, share in enumerate(shares)]
    try:
        if kill_redis:
            client = redis.Redis.from_url(server.url)
            for _ in range(2000):  # until all four are in the heartbeat set (bounded: 100 s)
                keys = client.keys("snapcrawl:quota:*:processes")
                if (keys and client.zcard(keys[0]) == PROCESSES) or any(p.poll() is not None for p in procs):
                    break
                time.sleep(0.05)
            client.close()
            assert all(p.poll() is None for p in procs), "a crawl ended before Redis could be killed"
            server.kill()
        errors = []
        for proc in procs:
            _, err = proc.communicate(timeout=100)
            errors.append(err.decode(errors="replace"))
            assert proc.returncode == 0, errors[-1]
    finally:
        for proc in procs:
            proc.kill()
    _check_complete(sim, tmp_path, shares)
    return errors


@pytest.mark.timeout(180)
def test_four_processes_share_one_quota(
    quota_simulator: Simulator, own_redis_server: RedisServer, tmp_path: Path
) -> None:
    """Four crawls told the quota send at about the quota together (not four times it), and all complete."""
    for err in _run(quota_simulator, own_redis_server, tmp_path, kill_redis=False):
        assert "0 locally" in err  # every request went through the shared bucket
    rows = [row for row in quota_simulator.stats.seconds if row.requests]
    assert len(rows) >= 3, "too short a crawl to tell a rate"
    whole = rows[1:-1]  # the first and last seconds are partly idle
    mean = sum(row.requests for row in whole) / len(whole)
    assert mean <= 1.1 * QUOTA  # four unshared limiters would send up to 4x, and be throttled
    throttled = sum(row.throttled for row in rows)
    assert throttled <= 0.05 * sum(row.requests for row in rows)


@pytest.mark.timeout(180)
def test_redis_killed_mid_crawl(quota_simulator: Simulator, own_redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis killed while four crawls share it: each goes on alone at its share and completes its output."""
    errors = _run(quota_simulator, own_redis_server, tmp_path, kill_redis=True)
    for err in errors:
        assert err.count("limiter.redis_unavailable") == 1  # warned once
        assert "Redis unavailable once" in err
