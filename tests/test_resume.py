"""Resumable crawls: the SQLite checkpoint, kill -9 at random moments, and SIGINT/SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapcrawl import ConfigError, Crawler, RetryPolicy
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from snapcrawl.sinks import JsonLinesSink
from snapcrawl.sinks.jsonl import Checkpoint


@pytest.fixture(scope="module")
def slow_simulator() -> Iterator[Simulator]:
    """2,000 volumes answering in 10-30 ms, so that a crawl takes long enough to be interrupted."""
    with run_in_thread(volumes=2000, seed=23, faults=Faults(latency=(0.01, 0.03))) as sim:
        yield sim


def _ids(path: Path) -> Counter[str]:
    return Counter(json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines())


def _command(sim: Simulator, workdir: Path) -> tuple[list[str], dict[str, str]]:
    volumes = workdir / "volumes.txt"
    if not volumes.exists():
        volumes.write_text("\n".join(sim.dataset.volume_ids) + "\n", encoding="utf-8")
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes", str(volumes)]
    argv += ["--out", str(workdir / "out.jsonl"), "--state", str(workdir / "state.db"), "--concurrency", "16"]
    argv += ["--no-progress"]
    env = os.environ | {"SCP_ACCESS_KEY": sim.credentials.access_key, "SCP_SECRET_KEY": sim.credentials.secret_key}
    return argv, env


def test_checkpoint_cuts_output_back_to_the_commit(tmp_path: Path) -> None:
    """Lines written after the last commit are cut off when the output is opened again."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    with Checkpoint(state, output=out, settings={}) as checkpoint, checkpoint.open_output() as file:
        file.write(b"committed\n")
        file.flush()
        checkpoint.record_page("v1", "s9", last=True)
        checkpoint.commit(10)
        file.write(b"not committed\n")
        checkpoint.record_page("v2", "s3", last=False)
    with Checkpoint(state, output=out, settings={}) as checkpoint, checkpoint.open_output() as file:
        assert file.tell() == 10
        assert checkpoint.get("v1") == ("done", "s9", 1)
        assert checkpoint.get("v2") is None
    assert out.read_bytes() == b"committed\n"


def test_checkpoint_refuses_another_crawl(tmp_path: Path) -> None:
    """A state file is tied to its output and settings."""
    state = tmp_path / "state.db"
    with Checkpoint(state, output=tmp_path / "a.jsonl", settings={"sort": "name:asc"}):
        pass
    with pytest.raises(ConfigError, match="belongs to another crawl"):
        Checkpoint(state, output=tmp_path / "b.jsonl", settings={"sort": "name:asc"})
    with pytest.raises(ConfigError, match="belongs to another crawl"):
        Checkpoint(state, output=tmp_path / "a.jsonl", settings={"sort": "size:asc"})


def test_checkpoint_detects_a_shortened_output(tmp_path: Path) -> None:
    """An output shorter than the committed length is an error, not silent loss."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    with Checkpoint(state, output=out, settings={}) as checkpoint:
        checkpoint.commit(100)
    out.write_bytes(b"short\n")
    with Checkpoint(state, output=out, settings={}) as checkpoint, pytest.raises(ConfigError, match="shorter"):
        checkpoint.open_output()


async def test_library_resume_after_failures(simulator: Simulator, tmp_path: Path) -> None:
    """Failed volumes keep their marker and are finished on the next run; done volumes are skipped."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    busy = sorted(simulator.dataset.volume_ids, key=simulator.dataset.count, reverse=True)[:3]
    simulator.faults = Faults(fail_volumes=frozenset(busy))
    for attempt in range(2):
        sink = JsonLinesSink(str(out), state=str(state), settings={})
        retry = RetryPolicy(max_retries=0)
        try:
            async with Crawler(endpoint=simulator.url, credentials=simulator.credentials, retry=retry) as crawler:
                result = await crawler.crawl_into(simulator.dataset.volume_ids, sink)
        finally:
            await sink.aclose()
        if attempt == 0:
            assert {f.volume_id for f in result.failures} == set(busy)
            assert {v: getattr(sink.progress(v), "status", None) for v in busy} == dict.fromkeys(busy, "failed")
            simulator.faults = Faults()
        else:
            assert result.failures == []
            assert result.stats.volumes_skipped == len(simulator.dataset.volume_ids) - 3
    ids = _ids(out)
    assert len(ids) == simulator.dataset.total and set(ids.values()) == {1}


def test_kill_9_at_random_moments(slow_simulator: Simulator, tmp_path: Path) -> None:
    """Killed with SIGKILL three times at random points, the resumed crawl still writes every snapshot once."""
    argv, env = _command(slow_simulator, tmp_path)
    rng = random.Random(os.getpid())
    for _ in range(3):
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        time.sleep(rng.uniform(0.8, 2.0))
        process.kill()
        process.wait(timeout=10)
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert finished.returncode == 0, finished.stderr
    assert "done earlier" in finished.stderr
    ids = _ids(tmp_path / "out.jsonl")
    assert len(ids) == slow_simulator.dataset.total and set(ids.values()) == {1}


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_gracefully(slow_simulator: Simulator, tmp_path: Path, signum: int, status: int) -> None:
    """SIGINT/SIGTERM flush and commit, say how to resume, exit 130/143; the resumed run completes exactly once."""
    argv, env = _command(slow_simulator, tmp_path)
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # noqa: S603
    out = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 30
    # Signal mid-crawl: once output has been written, the handlers are installed and the crawl is under way.
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(signum)
    _, err = process.communicate(timeout=10)
    assert process.returncode == status, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    partial = _ids(tmp_path / "out.jsonl")
    assert 0 < len(partial) < slow_simulator.dataset.total and set(partial.values()) == {1}
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert finished.returncode == 0, finished.stderr
    ids = _ids(tmp_path / "out.jsonl")
    assert len(ids) == slow_simulator.dataset.total and set(ids.values()) == {1}


def test_state_needs_an_output_file(simulator: Simulator, tmp_path: Path) -> None:
    """--state without --out FILE is a usage error."""
    argv, env = _command(simulator, tmp_path)
    argv.remove("--out")
    argv.remove(str(tmp_path / "out.jsonl"))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert result.returncode == 2 and "--state needs --out" in result.stderr
