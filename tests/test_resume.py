"""Resumable crawls: the SQLite checkpoint, kill -9 at random moments, and SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapcrawl import ConfigError, Crawler, RetryPolicy
from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from snapcrawl.sinks import JsonLinesSink
from snapcrawl.sinks.jsonl import Checkpoint

from .fakes import PageServer, serve_in_thread


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


def _committed_offset(state: Path) -> int:
    """The output length the state file has committed so far (0 before its first commit), read-only."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'output_offset'").fetchone()
    except sqlite3.Error:  # not created yet, or its schema not yet written
        return 0
    return int(row[0]) if row else 0


@pytest.mark.timeout(150)
def test_kill_9_at_random_moments(slow_simulator: Simulator, tmp_path: Path) -> None:
    """Killed with SIGKILL three times at random points after a commit, the resumed crawl still writes every
    snapshot once. The waits come from a logged seed: SNAPCRAWL_KILL_SEED=<seed> replays them."""
    argv, env = _command(slow_simulator, tmp_path)
    state = tmp_path / "state.db"
    seed = int(os.environ.get("SNAPCRAWL_KILL_SEED") or random.SystemRandom().randrange(2**32))
    print(f"kill -9 seed: {seed} (SNAPCRAWL_KILL_SEED={seed} replays it)")
    rng = random.Random(seed)
    killed_mid_crawl = 0
    for _ in range(3):
        before = _committed_offset(state)
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + 40
        # Kill only once this run has committed something: before that a kill tests nothing new.
        while process.poll() is None and _committed_offset(state) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))  # then anywhere: mid-write, mid-commit, between commits
        killed_mid_crawl += process.poll() is None
        process.kill()
        process.wait(timeout=10)
    assert killed_mid_crawl >= 1
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
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
    deadline = time.monotonic() + 20
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
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=25, check=False)  # noqa: S603
    assert finished.returncode == 0, finished.stderr
    ids = _ids(tmp_path / "out.jsonl")
    assert len(ids) == slow_simulator.dataset.total and set(ids.values()) == {1}


def test_state_needs_an_output_file(simulator: Simulator, tmp_path: Path) -> None:
    """--state without --out FILE is a usage error."""
    argv, env = _command(simulator, tmp_path)
    argv.remove("--out")
    argv.remove(str(tmp_path / "out.jsonl"))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    assert result.returncode == 2 and "--state needs --out to be a file" in result.stderr


# -- resume edge cases, through the command line against a server that fails chosen queries -------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials in the environment, and no ~/.scpconf or SCP_ENDPOINT to fall back on."""
    for name in list(os.environ):
        if name.startswith("SCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCP_ACCESS_KEY", "AK-test")
    monkeypatch.setenv("SCP_SECRET_KEY", "SK-test")


def _crawl_args(url: str, tmp_path: Path, *extra: str) -> list[str]:
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    return ["crawl", "--endpoint", url, "--out", str(out), "--state", str(state), "--no-progress", *extra]


@pytest.mark.usefixtures("cli_env")
def test_volume_failed_mid_way_resumes_from_its_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A volume that failed on its third page resumes after its last written snapshot; done volumes are skipped."""
    server = PageServer({"v1": 25, "v2": 5})
    server.fail = lambda query: 500 if query.get("marker") == "v1-snap-00020" else None
    args = _crawl_args("", tmp_path, "--volume", "v1", "--volume", "v2", "--page-size", "10", "--max-retries", "0")
    with serve_in_thread(server.handle) as url:
        args[2] = url
        assert main(args) == 1
        assert "failed: volume v1" in capsys.readouterr().err
        assert _ids(tmp_path / "out.jsonl") == Counter(server.ids("v1")[:20] + server.ids("v2"))
        server.fail = lambda query: None
        server.queries.clear()
        assert main(args) == 0
    # v2 is not asked for again; v1 starts after its marker (the walk may then confirm the end with an empty page).
    assert {q["volume_id"] for q in server.queries} == {"v1"}
    assert server.queries[0].get("marker") == "v1-snap-00020"
    assert _ids(tmp_path / "out.jsonl") == Counter(server.ids("v1") + server.ids("v2"))


@pytest.mark.usefixtures("cli_env")
def test_partial_account_crawl_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An account-wide crawl that failed part-way exits 1; run again with --state it finishes, each snapshot once."""
    server = PageServer({"a": 12, "b": 13})
    tenth = server.ids()[9]
    server.fail = lambda query: 503 if query.get("marker") == tenth else None
    args = _crawl_args("", tmp_path, "--page-size", "5", "--max-retries", "1")
    with serve_in_thread(server.handle) as url:
        args[2] = url
        assert main(args) == 1
        assert "failed: account listing" in capsys.readouterr().err
        assert _ids(tmp_path / "out.jsonl") == Counter(server.ids()[:10])
        server.fail = lambda query: None
        server.queries.clear()
        assert main(args) == 0
    assert server.queries[0].get("marker") == tenth and "volume_id" not in server.queries[0]
    ids = _ids(tmp_path / "out.jsonl")
    assert ids == Counter(server.ids()) and set(ids.values()) == {1}


@pytest.mark.usefixtures("cli_env")
def test_state_file_of_another_crawl_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state file reused with another endpoint, name filter or sort is refused (exit 2) before any request."""
    server = PageServer({"v1": 3})
    with serve_in_thread(server.handle) as url:
        base = _crawl_args(url, tmp_path, "--volume", "v1")
        assert main(base) == 0
        capsys.readouterr()
        sent = len(server.queries)
        other_endpoint = [*base]
        other_endpoint[2] = url.replace("127.0.0.1", "localhost")
        for args in (other_endpoint, [*base, "--name", "nightly"], [*base, "--sort", "size:asc"]):
            assert main(args) == 2, args
            assert "belongs to another crawl" in capsys.readouterr().err
        assert len(server.queries) == sent


@pytest.mark.usefixtures("cli_env")
def test_shortened_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output file cut shorter than the state file records is refused (exit 2), not silently re-filled."""
    server = PageServer({"v1": 30})
    with serve_in_thread(server.handle) as url:
        args = _crawl_args(url, tmp_path, "--volume", "v1", "--volume", "v2")
        assert main(args) == 0
        out = tmp_path / "out.jsonl"
        out.write_bytes(out.read_bytes()[:100])
        capsys.readouterr()
        assert main(args) == 2
    assert "shorter" in capsys.readouterr().err
    assert len(out.read_bytes()) == 100  # left as it was
