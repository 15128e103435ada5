"""``snapcrawl job status`` and the crawl command's checks of --limiter, --queue, --job and --claim-after."""

from __future__ import annotations

import json

import anyio
import pytest

from snapcrawl.cli import main
from snapcrawl.queue import JobQueue
from snapcrawl.simulator.faults import ESCAPES

from .conftest import RedisServer


def _enqueue(url: str, job: str, volumes: list[str]) -> None:
    async def run() -> None:
        queue = JobQueue(url, job)
        await queue.client.flushdb()
        await queue.enqueue(volumes)
        await queue.aclose()

    anyio.run(run)


def test_job_status_text(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Job status shows the volumes pending, in progress, done and failed, and the workers alive."""
    _enqueue(redis_server.url, "nightly", ["a", "b", "c"])
    assert main(["job", "status", "--queue", redis_server.url, "--job", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "job nightly: running, 3 volumes" in out
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
        "total": 1,
        "pending": 1,
        "in_progress": 0,
        "done": 0,
        "failed": {},
        "workers": [],
        "complete": False,
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--queue", "redis://127.0.0.1:1/0", "--job", "j", "--out", "snaps.jsonl"], "the local file 'snaps.jsonl'"),
        (["--queue", "redis://127.0.0.1:1/0", "--job", "j"], "stdout"),
        (["--queue", "redis://127.0.0.1:1/0"], "--queue and --job go together"),
        (["--job", "j"], "--queue and --job go together"),
        (["--claim-after", "5"], "--claim-after needs --queue"),
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
