"""A fleet with ``--limiter redis://``: every account shares its quota through a key of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from snapcrawl import Credentials
from snapcrawl.limits.redis import quota_key
from snapcrawl.simulator import Simulator, run_in_thread
from tests.redis_server import RedisServer

KEYS = {
    "a": Credentials(access_key="AK-red-a", secret_key="sa"),
    "b": Credentials(access_key="AK-red-b", secret_key="sb"),
}


@pytest.fixture(scope="module")
def two_accounts() -> Iterator[dict[str, Simulator]]:
    with (
        run_in_thread(volumes=20, seed=3, credentials=KEYS["a"]) as a,
        run_in_thread(volumes=20, seed=4, credentials=KEYS["b"]) as b,
    ):
        yield {"a": a, "b": b}


async def test_each_account_has_its_own_key(
    two_accounts: dict[str, Simulator], redis_server: RedisServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(
        "".join(
            f'[accounts.{name}]\nendpoint = "{sim.url}"\naccess_key_env = "RED_{name}_AK"\n'
            f'secret_key_env = "RED_{name}_SK"\nrate = 50\n'
            for name, sim in two_accounts.items()
        ),
        encoding="utf-8",
    )
    env = os.environ | {f"RED_{n}_AK": k.access_key for n, k in KEYS.items()}
    env |= {f"RED_{n}_SK": k.secret_key for n, k in KEYS.items()}
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--config", str(config), "--limiter", redis_server.url]
    argv += ["--out", str(tmp_path / "out.jsonl"), "--no-progress"]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    )
    assert done.returncode == 0, done.stderr
    for name, sim in two_accounts.items():
        assert await redis_client.exists(quota_key(sim.url, KEYS[name].access_key)), name
    assert quota_key(two_accounts["a"].url, KEYS["a"].access_key) != quota_key(
        two_accounts["b"].url, KEYS["b"].access_key
    )
