"""``snapcrawl job status|list|delete|retry`` and the crawl command's checks of its distributed options."""

from __future__ import annotations

import json

import anyio
import pytest
import redis

from snapcrawl.cli import main
from snapcrawl.queue import JobKeys, JobQueue
from snapcrawl.simulator.faults import ESCAPES
from tests.redis_server import RedisServer


def _enqueue(url: str, job: str, volumes: list[str]) -> None:
    async def run() -> None:
        queue = JobQueue(url, job)
        await queue.client.flushdb()
        await queue.enqueue(volumes)
        await queue.aclose()

    anyio.run(run)


def test_job_status_text(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Job status shows the volumes pending, in progress, done and failed, and that no worker has joined yet."""
    _enqueue(redis_server.url, "nightly", ["a", "b", "c"])
    assert main(["job", "status", "--queue", redis_server.url, "--job", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "job nightly: waiting: 3 volumes and no worker has joined yet, 3 volumes" in out
    assert "pending      3" in out
    assert "done         0" in out
    assert "workers      0" in out


def test_job_status_json(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one object with the same figures."""
    _enqueue(redis_server.url, "j2", ["a"])
    assert main(["job", "status", "--queue", redis_server.url, "--job", "j2", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status == {
        "job": "j2",
        "state": "waiting",
        "total": 1,
        "pending": 1,
        "in_progress": 0,
        "done": 0,
        "failed": {},
        "workers": [],
        "last_seen": None,
        "complete": False,
        "expires_in": None,
    }


@pytest.mark.parametrize("action", [["status"], ["delete"], ["retry"], ["status", "--json"]])
def test_unknown_job_is_an_error(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    """A job Redis does not hold (never enqueued, expired, deleted): exit 2 naming it, never "0 volumes"."""
    _enqueue(redis_server.url, "other", ["a"])
    assert main(["job", *action[:1], "--queue", redis_server.url, "--job", "ghost", *action[1:]]) == 2
    captured = capsys.readouterr()
    assert "no job 'ghost' in Redis at 127.0.0.1:" in captured.err
    assert captured.out == ""


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_abandoned_job_says_so(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Volumes left and the only worker's last heartbeat long ago: the job is abandoned, and status says so."""
    _enqueue(redis_server.url, "nightly", ["a", "b"])
    client = _redis(redis_server.url)
    seconds, _ = client.time()
    client.zadd(JobKeys.for_job("nightly").workers, {"host:1:dead": seconds - 600})
    client.close()
    assert main(["job", "status", "--queue", redis_server.url, "--job", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "job nightly: abandoned: 2 volumes left and no worker alive (last heartbeat 10.0 min ago)" in out


def test_job_list(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """job list shows every job of this Redis with its state, one a line (or JSON)."""
    _enqueue(redis_server.url, "first", ["a", "b"])
    anyio.run(_add_job, redis_server.url, "second:part", ["c"])
    assert main(["job", "list", "--queue", redis_server.url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [["first", "0/2 volumes"], ["second:part", "0/1 volume"]]
    assert main(["job", "list", "--queue", redis_server.url, "--json"]) == 0
    assert [json.loads(line)["job"] for line in capsys.readouterr().out.splitlines()] == ["first", "second:part"]


async def _add_job(url: str, job: str, volumes: list[str]) -> None:
    queue = JobQueue(url, job)
    await queue.enqueue(volumes)
    await queue.aclose()


def test_job_delete(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """delete refuses while a worker is alive (exit 2), deletes with --force; the job is then unknown."""
    _enqueue(redis_server.url, "nightly", ["a"])
    client = _redis(redis_server.url)
    seconds, _ = client.time()
    client.zadd(JobKeys.for_job("nightly").workers, {"host:1:alive": seconds})
    argv = ["job", "delete", "--queue", redis_server.url, "--job", "nightly"]
    assert main(argv) == 2
    assert "1 worker alive" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert client.keys("snapcrawl:job:nightly:*") == []
    client.close()
    assert main(["job", "status", "--queue", redis_server.url, "--job", "nightly"]) == 2


def test_job_retry(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """retry requeues dead-lettered volumes (all, or those named); a volume that is not dead-lettered is exit 1."""
    _enqueue(redis_server.url, "nightly", ["a", "b", "c"])
    keys = JobKeys.for_job("nightly")
    client = _redis(redis_server.url)
    client.hset(keys.failed, mapping={"a": "500 (volume a)", "b": "500 (volume b)"})
    client.hset(keys.attempts, mapping={"a": 3, "b": 3})
    entries = client.xlen(keys.stream)
    argv = ["job", "retry", "--queue", redis_server.url, "--job", "nightly"]
    assert main([*argv, "--volume", "a", "--volume", "c"]) == 1
    err = capsys.readouterr().err
    assert "1 dead-lettered volume requeued" in err
    assert "volume c is not dead-lettered" in err
    assert "run a crawl with --job nightly" in err
    assert client.hkeys(keys.failed) == [b"b"]
    assert client.hget(keys.attempts, "a") is None  # fresh deliveries
    assert main(argv) == 0
    assert client.hlen(keys.failed) == 0
    assert client.xlen(keys.stream) == entries + 2
    client.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--queue", "redis://127.0.0.1:1/0", "--job", "j", "--out", "snaps.jsonl"], "the local file 'snaps.jsonl'"),
        (["--queue", "redis://127.0.0.1:1/0", "--job", "j"], "stdout"),
        (["--queue", "redis://127.0.0.1:1/0"], "--queue and --job go together"),
        (["--job", "j"], "--queue and --job go together"),
        (["--claim-after", "5"], "--claim-after needs --queue"),
        (["--max-deliveries", "5"], "--max-deliveries needs --queue"),
        (["--keep-finished", "60"], "--keep-finished needs --queue"),
    ],
)
def test_crawl_usage_errors(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A local file (or stdout) with --queue, or half of --queue/--job, is a usage error: exit 2, no traceback."""
    argv = ["crawl", "--endpoint", "http://127.0.0.1:9", "--volume", "v", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_job_status_bad_name(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid job name is a usage error."""
    assert main(["job", "status", "--queue", redis_server.url, "--job", "no spaces"]) == 2
    assert "invalid job name" in capsys.readouterr().err


def test_job_status_escapes_server_text(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A dead-lettered volume's error, as a server worded it, is shown with its escape sequences escaped."""
    _enqueue(redis_server.url, "hostile", ["a"])

    async def dead_letter() -> None:
        queue = JobQueue(redis_server.url, "hostile")
        await queue.client.hset(queue.keys.failed, "a", f"request rejected (HTTP 400: {ESCAPES})")
        await queue.aclose()

    anyio.run(dead_letter)
    assert main(["job", "status", "--queue", redis_server.url, "--job", "hostile"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "\\x1b]0;pwned\\x07" in out
