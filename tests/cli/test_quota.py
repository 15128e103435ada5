"""``snapcrawl quota status|reset``: what a shared quota's key holds, and clearing it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
import redis

from snapcrawl.cli import main
from snapcrawl.limits.redis import RedisLimiter, quota_key
from snapcrawl.simulator import DEMO_CREDENTIALS, run_in_thread
from tests.redis_server import RedisServer

ENDPOINT = "http://127.0.0.1:9"


async def _run_once(url: str, access_key: str, rate: float) -> None:
    async with RedisLimiter(url, endpoint=ENDPOINT, access_key=access_key, rate=rate) as limiter:
        await limiter.acquire()


@pytest.fixture
def two_keys(redis_server: RedisServer) -> list[str]:
    """Two quota keys in a flushed Redis, as two accounts' runs leave them."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    anyio.run(_run_once, redis_server.url, "key-one", 100.0)
    anyio.run(_run_once, redis_server.url, "key-two", 500.0)
    return [quota_key(ENDPOINT, "key-one"), quota_key(ENDPOINT, "key-two")]


def test_status_shows_every_key(
    redis_server: RedisServer, two_keys: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """status without a key shows each key's rate in force and rate told."""
    assert main(["quota", "status", "--limiter", redis_server.url, "--json"]) == 0
    states = {state["key"]: state for state in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(states) == set(two_keys)
    assert states[two_keys[1]]["rate"] == pytest.approx(495.0)
    assert states[two_keys[1]]["told"] == 500.0  # what --rate said; the rate in force keeps 1% under it
    assert states[two_keys[1]]["processes"] == []  # the run has ended
    assert 0 < states[two_keys[1]]["expires_in"] <= RedisLimiter.KEY_TTL
    assert main(["quota", "status", "--limiter", redis_server.url, "--key", two_keys[0]]) == 0
    out = capsys.readouterr().out
    assert "rate in force  99.00/s" in out and "told           100.00/s" in out


def test_status_by_endpoint_and_access_key(
    redis_server: RedisServer, two_keys: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--endpoint (with SCP_ACCESS_KEY) names the key as the crawl derives it."""
    monkeypatch.setenv("SCP_ACCESS_KEY", "key-two")
    monkeypatch.setenv("SCP_SECRET_KEY", "secret")
    assert main(["quota", "status", "--limiter", redis_server.url, "--endpoint", ENDPOINT]) == 0
    out = capsys.readouterr().out
    assert two_keys[1] in out
    assert "key-two" not in out  # the access key itself never shows


def test_reset(redis_server: RedisServer, two_keys: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """reset clears one key; the next status of it is an error naming it; reset needs a choice."""
    assert main(["quota", "reset", "--limiter", redis_server.url]) == 2
    assert "--key, --endpoint" in capsys.readouterr().err
    assert main(["quota", "reset", "--limiter", redis_server.url, "--key", two_keys[0]]) == 0
    assert main(["quota", "status", "--limiter", redis_server.url, "--key", two_keys[0]]) == 2
    assert "holds nothing" in capsys.readouterr().err
    assert main(["quota", "reset", "--limiter", redis_server.url, "--all"]) == 0
    assert main(["quota", "status", "--limiter", redis_server.url, "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_unreachable_redis(capsys: pytest.CaptureFixture[str], nowhere: str) -> None:
    """No Redis: exit 1 naming the server, not a traceback."""
    assert main(["quota", "status", "--limiter", nowhere]) == 1
    assert f"Redis at {nowhere[8:]} unreachable" in capsys.readouterr().err


def test_crawls_in_a_row_keep_the_told_rate(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``snapcrawl crawl --limiter`` again and again: a full run, a tiny run after an idle gap, then a raised
    --rate. The rate Redis holds after each is the told one, never lower; the raised one is in force at once."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    monkeypatch.setenv("SCP_ACCESS_KEY", DEMO_CREDENTIALS.access_key)
    monkeypatch.setenv("SCP_SECRET_KEY", DEMO_CREDENTIALS.secret_key)
    with run_in_thread(volumes=12, seed=5) as sim:
        key = quota_key(sim.url, DEMO_CREDENTIALS.access_key)
        volumes = sim.dataset.volume_ids
        rates = []
        for rate, ids, idle in ((40.0, volumes, 0.0), (40.0, volumes[:1], 2.5), (80.0, volumes, 0.0)):
            time.sleep(idle)
            argv = ["crawl", "--endpoint", sim.url, *(f"--volume={v}" for v in ids), "--out", str(tmp_path / "o.jsonl")]
            argv += ["--limiter", redis_server.url, "--rate", str(rate), "--no-progress", "--page-size", "5"]
            assert main(argv) == 0, capsys.readouterr().err
            assert "0 locally" in capsys.readouterr().err
            assert main(["quota", "status", "--limiter", redis_server.url, "--key", key, "--json"]) == 0
            rates.append(json.loads(capsys.readouterr().out)["rate"])
    assert rates == pytest.approx([39.6, 39.6, 79.2])
