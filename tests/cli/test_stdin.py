"""Ids from a producer that keeps its pipe open: crawled as they arrive, and a signal still stops the crawl."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from snapcrawl import ConfigError, Crawler, Page
from snapcrawl.cli._ids import read_ids_as_they_come
from snapcrawl.simulator import Simulator


async def _requests_for(simulator: Simulator, volume_id: str) -> int:
    """How many requests one crawl of the volume makes (measured on the simulator, then its stats reset)."""
    before = simulator.stats.requests
    async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
        await crawler.crawl_into([volume_id], lambda page: None)
    spent = simulator.stats.requests - before
    simulator.stats.reset()
    return spent


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_id_on_an_open_pipe_is_crawled_and_a_signal_stops_the_crawl(
    simulator: Simulator, tmp_path: Path, signum: int
) -> None:
    """One id written to a stdin that stays open is crawled at once; SIGTERM/SIGINT then end the run cleanly."""
    volume_id = max(simulator.dataset.volume_ids, key=simulator.dataset.count)
    requests = anyio.run(_requests_for, simulator, volume_id)
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", simulator.url, "--volumes-from", "-"]
    argv += ["--out", str(out), "--state", str(state), "--no-progress"]
    env = os.environ | {
        "SCP_ACCESS_KEY": simulator.credentials.access_key,
        "SCP_SECRET_KEY": simulator.credentials.secret_key,
    }
    process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write(f"# typed by hand\n{volume_id}\n".encode())
        process.stdin.flush()
        deadline = time.monotonic() + 30
        while simulator.stats.requests < requests and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert simulator.stats.requests == requests  # the whole volume, while stdin is still open
        process.send_signal(signum)
        process.wait(timeout=20)  # stdin stays open on our side all along
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stderr.close()
    assert process.returncode == 128 + signum, err
    assert b"Traceback" not in err
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == simulator.dataset.count(volume_id)


def test_snapshots_of_an_id_on_an_open_pipe_reach_stdout_at_once(simulator: Simulator) -> None:
    """With stdout as the output, an id's snapshots are printed while the producer keeps stdin open."""
    volume_id = max(simulator.dataset.volume_ids, key=simulator.dataset.count)
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", simulator.url, "--volumes-from", "-"]
    env = os.environ | {
        "SCP_ACCESS_KEY": simulator.credentials.access_key,
        "SCP_SECRET_KEY": simulator.credentials.secret_key,
    }
    process = subprocess.Popen(  # noqa: S603
        [*argv, "--no-progress"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None and process.stdout is not None
    received = b""
    try:
        process.stdin.write(f"{volume_id}\n".encode())
        process.stdin.flush()
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while received.count(b"\n") < simulator.dataset.count(volume_id) and time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    received += os.read(process.stdout.fileno(), 1 << 16)
        assert received.count(b"\n") == simulator.dataset.count(volume_id)  # printed while stdin is open
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()
    assert process.returncode == 128 + signal.SIGTERM
    assert {json.loads(line)["volume_id"] for line in received.splitlines()} == {volume_id}


async def test_ids_from_a_blocking_iterable_are_crawled_as_they_arrive(simulator: Simulator) -> None:
    """A generator that waits between ids has each crawled before it yields the next, and the crawl can be
    cancelled while the generator is still waiting."""
    first, second = simulator.dataset.volume_ids[:2]
    taken, stop = threading.Event(), threading.Event()
    timed_out: list[str] = []

    def slow_ids() -> Iterator[str]:
        yield first
        if not taken.wait(20):  # the crawl must take this id before the producer sends another
            timed_out.append(first)
        yield second
        stop.wait(30)  # then the producer stays silent, its pipe open

    seen: list[str | None] = []
    scope = anyio.CancelScope()

    def on_page(page: Page) -> None:
        seen.append(page.volume_id)
        if page.last and page.volume_id == first:
            taken.set()
        elif page.last and page.volume_id == second:
            scope.cancel()  # the producer is still blocked: the crawl must stop anyway

    try:
        with anyio.fail_after(30):  # a safety net against a hang, not a speed check
            async with Crawler(endpoint=simulator.url, credentials=simulator.credentials) as crawler:
                with scope:
                    await crawler.crawl_into(slow_ids(), on_page)
    finally:
        stop.set()
    assert timed_out == []
    assert scope.cancelled_caught
    assert set(seen) == {first, second}


async def test_reading_a_pipe_yields_each_line_as_it_comes(tmp_path: Path) -> None:
    """The CLI's pipe reader yields an id once its line is complete, skipping comments, before the pipe closes."""
    read_fd, write_fd = os.pipe()
    try:
        ids = read_ids_as_they_come(read_fd)
        os.write(write_fd, b"# comment\n  vol-1  \nvol-")
        assert await ids.__anext__() == "vol-1"
        os.write(write_fd, b"2\n\n")
        assert await ids.__anext__() == "vol-2"
        os.write(write_fd, b"vol-3")  # no newline before the end
        os.close(write_fd)
        write_fd = -1
        assert [volume_id async for volume_id in ids] == ["vol-3"]
    finally:
        os.close(read_fd)
        if write_fd != -1:
            os.close(write_fd)


async def test_ids_that_are_not_utf8_are_a_usage_error() -> None:
    """Bytes that are not UTF-8 on stdin are a ConfigError naming where they came from."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"\xff\xfe\n")
    os.close(write_fd)
    try:
        with pytest.raises(ConfigError, match="stdin: not UTF-8"):
            [volume_id async for volume_id in read_ids_as_they_come(read_fd)]
    finally:
        os.close(read_fd)
