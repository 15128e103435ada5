"""``snapcrawl quota status|reset``: what a shared quota's key holds, and clearing it."""

from __future__ import annotations

import json

import anyio
import pytest

from snapcrawl.cli import main
from snapcrawl.limits.redis import RedisLimiter, quota_key

from .conftest import RedisServer

ENDPOINT = "http://127.0.0.1:9"


async def _run_once(url: str, access_key: str, rate: float) -> None:
    async with RedisLimiter(url, endpoint=ENDPOINT, access_key=access_key, rate=rate) as limiter:
        await limiter.acquire()


@pytest.fixture
def two_keys(redis_server: RedisServer) -> list[str]:
    """Two quota keys in a flushed Redis, as two accounts' runs leave them."""
    import redis  # noqa: PLC0415

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
    assert states[two_keys[1]]["told"] == pytest.approx(495.0)
    assert states[two_keys[1]]["processes"] == []  # the run has ended
    assert 0 < states[two_keys[1]]["expires_in"] <= RedisLimiter.KEY_TTL
    assert main(["quota", "status", "--limiter", redis_server.url, "--key", two_keys[0]]) == 0
    assert "rate in force  99.00/s" in capsys.readouterr().out


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
