"""A real ``redis-server`` on a free loopback port, persistence off; skipped outside CI when it is not installed.

A pytest plugin that ``tests/conftest.py`` loads, so that the tests of any package (limits, queue, cli) can ask
for a Redis server: the server is a fixture, not a folder. The ``redis`` client (an extra) is imported only when a
fixture is used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis.asyncio as aioredis

_PACKAGE_HINT = "redis-server not found: install the Debian package redis-server (apt-get install redis-server)"


def _redis_server_binary() -> str:
    """The ``redis-server`` executable; outside CI a missing one skips, in CI (``CI`` set) it fails."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(_PACKAGE_HINT)
        pytest.skip(_PACKAGE_HINT)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process: started, killed (SIGKILL, as a crash) and restarted on the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        for _ in range(5):
            self.process = subprocess.Popen(  # noqa: S603 - a fixed local binary
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self.kill()
            self.port = _free_port()  # the port was taken meanwhile: another one
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self) -> bool:
        import redis  # noqa: PLC0415 - the redis extra, only once a server is asked for

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0)
        try:
            for _ in range(200):
                if self.process is None or self.process.poll() is not None:
                    return False
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return True
                time.sleep(0.05)
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def nowhere() -> str:
    """A Redis URL where nothing listens: a port just freed on loopback."""
    return f"redis://127.0.0.1:{_free_port()}/0"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the session (tests flush it); stopped afterwards."""
    server = RedisServer(_redis_server_binary())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that kill it."""
    server = RedisServer(_redis_server_binary())
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the shared server, flushed before the test."""
    import redis.asyncio as aioredis  # noqa: PLC0415 - the redis extra, only once a client is asked for

    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()
