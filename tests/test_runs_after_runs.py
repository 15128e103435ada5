"""What one run leaves behind never harms the next: outputs kept whole, overlapping paths and second writers
refused, and one rerun rule (a finished crawl starts over) for JSON Lines with --state and for SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from snapcrawl.cli import main
from snapcrawl.simulator import Faults, Simulator, run_in_thread
from snapcrawl.sinks import JsonLinesSink, SqliteSink

from .fakes import PageServer, serve_in_thread


def _ids(path: Path) -> Counter[str]:
    return Counter(json.loads(line)["id"] for line in path.read_bytes().splitlines())


def _rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT id, volume_id FROM snapshots").fetchall())


def _crawl(*argv: str) -> int:
    return main(["crawl", "--no-progress", *argv])


# -- a run that fetched nothing leaves the previous output as it was -----------------------------------------


@pytest.mark.parametrize("state", [False, True])
def test_bad_credentials_leave_the_previous_jsonl_byte_for_byte(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], state: bool
) -> None:
    """Yesterday's finished output survives a run whose credentials are refused (exit 3), with or without --state."""
    out = tmp_path / "snapshots.jsonl"
    argv = ["--out", str(out), *(["--state", str(tmp_path / "state.db")] if state else [])]
    assert _crawl(*argv) == 0
    assert len(_ids(out)) == env.dataset.total
    if state:  # lines past the last commit (a kill -9) are cut only by a run that has something to write
        with out.open("ab") as file:
            file.write(b'{"id": "past the last commit", "volume_id": "v"}\n')
    before = out.read_bytes()
    monkeypatch.setenv("SCP_SECRET_KEY", "wrong")
    capsys.readouterr()
    assert _crawl(*argv) == 3
    assert out.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix != ".db" and "state" not in path.name) == [
        "snapshots.jsonl"
    ]  # no partial file left for a run that wrote nothing
    monkeypatch.setenv("SCP_SECRET_KEY", env.credentials.secret_key)
    assert _crawl(*argv) == 0  # and the next good run is a whole new crawl
    ids = _ids(out)
    assert len(ids) == env.dataset.total and set(ids.values()) == {1}


def test_bad_credentials_leave_the_previous_sqlite_table(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database destination keeps its rows through a run whose credentials are refused."""
    db = tmp_path / "inv.db"
    assert _crawl("--out", f"sqlite:///{db}") == 0
    before = _rows(db)
    monkeypatch.setenv("SCP_SECRET_KEY", "wrong")
    assert _crawl("--out", f"sqlite:///{db}") == 3
    assert _rows(db) == before and len(before) == env.dataset.total


def test_list_with_bad_credentials_keeps_the_previous_file(
    env: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`list --out` goes through the same partial file as `crawl`."""
    out = tmp_path / "one.jsonl"
    out.write_bytes(b"yesterday\n")
    monkeypatch.setenv("SCP_SECRET_KEY", "wrong")
    assert main(["list", "--volume", env.dataset.volume_ids[0], "--out", str(out)]) == 3
    assert out.read_bytes() == b"yesterday\n"
    assert [path.name for path in tmp_path.iterdir()] == ["one.jsonl"]


def test_credentials_refused_mid_crawl_keep_the_old_file_and_name_the_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused after some pages were written (exit 3), the old file stays whole and the partial output is named."""
    for name in list(os.environ):
        if name.startswith("SCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCP_ACCESS_KEY", "AK-test")
    monkeypatch.setenv("SCP_SECRET_KEY", "SK-test")
    server = PageServer({"v1": 5, "v2": 5})
    server.fail = lambda query: 403 if query.get("volume_id") == "v2" else None
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"yesterday\n")
    with serve_in_thread(server.handle) as url:
        argv = ["--endpoint", url, "--out", str(out), "--volume", "v1", "--volume", "v2", "--concurrency", "1"]
        assert _crawl(*argv) == 3
    err = capsys.readouterr().err
    assert out.read_bytes() == b"yesterday\n"
    partial = tmp_path / "out.jsonl.partial"
    assert f"{out} left as it was; this run's partial output is in {partial}" in err
    assert sorted(_ids(partial)) == sorted(server.ids("v1"))


def test_a_crawl_with_failed_volumes_still_replaces_the_output(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --state, a crawl that ran to its end replaces the file even when some volumes failed (exit 1)."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"yesterday\n")
    failing = env.dataset.volume_ids[:2]
    env.faults = Faults(fail_volumes=frozenset(failing))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(env.dataset.volume_ids), encoding="utf-8")
    assert _crawl("--out", str(out), "--volumes-from", str(ids_file), "--max-retries", "0") == 1
    ids = _ids(out)
    assert len(ids) == env.dataset.total - sum(env.dataset.count(v) for v in failing)
    assert "partial output" not in capsys.readouterr().err


# -- overlapping paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clash",
    [
        ("--out", "--state"),
        ("--out", "--volumes-from"),
        ("--state", "--volumes-from"),
        ("--out", "--summary-json"),
        ("--volumes-from", "--summary-json"),
    ],
)
def test_overlapping_paths_are_refused(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], clash: tuple[str, str]
) -> None:
    """One file given as two of output, state file, volume file and summary is refused (exit 2), the file left alone."""
    shared = tmp_path / "shared"
    shared.write_text(env.dataset.volume_ids[0] + "\n", encoding="utf-8")
    paths = {
        "--out": tmp_path / "out.jsonl",
        "--state": tmp_path / "state.db",
        "--volumes-from": tmp_path / "ids.txt",
        "--summary-json": tmp_path / "summary.json",
    }
    paths["--volumes-from"].write_text(env.dataset.volume_ids[1] + "\n", encoding="utf-8")
    paths[clash[0]] = paths[clash[1]] = shared
    argv = [str(item) for option, path in paths.items() for item in (option, path)]
    assert _crawl(*argv) == 2
    err = capsys.readouterr().err
    assert f"{clash[0]} and {clash[1]} are the same file" in err
    assert shared.read_text(encoding="utf-8") == env.dataset.volume_ids[0] + "\n"


def test_a_symbolic_link_to_the_state_file_is_the_same_file(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Paths are compared as the files they resolve to: a link to the state file is refused as the output."""
    state, link = tmp_path / "state.db", tmp_path / "out.jsonl"
    state.write_bytes(b"")
    link.symlink_to(state)
    assert _crawl("--out", str(link), "--state", str(state), "--volume", env.dataset.volume_ids[0]) == 2
    assert "--out and --state are the same file" in capsys.readouterr().err
    missing = tmp_path / "new.db"  # not created yet: compared by the path it resolves to
    assert _crawl("--out", f"sqlite:///{missing}", "--volumes-from", str(missing)) == 2


# -- a second writer -------------------------------------------------------------------------------------------


async def _held(sink: JsonLinesSink | SqliteSink) -> None:
    await sink.load_progress()


@pytest.mark.parametrize("state", [False, True])
def test_a_second_writer_of_the_output_is_refused(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], state: bool
) -> None:
    """While another run writes the output, a crawl into it exits 2 naming the file, and writes nothing."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"being written\n")
    holder = JsonLinesSink(out, state=tmp_path / "other.db", resume_finished=True) if state else JsonLinesSink(out)
    anyio.run(_held, holder)
    before = out.read_bytes()
    try:
        assert _crawl("--out", str(out), "--volume", env.dataset.volume_ids[0]) == 2
        assert _crawl("--out", str(out), "--state", str(tmp_path / "mine.db")) == 2
    finally:
        anyio.run(holder.aclose)
    err = capsys.readouterr().err
    assert f"{out}: in use by another snapcrawl run" in err or f"output {out}: in use" in err
    assert out.read_bytes() == before


def test_a_second_run_on_the_state_file_exits_2(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file in use by another run is exit 2 (it was 1), the message naming the state file."""
    state = tmp_path / "state.db"
    holder = JsonLinesSink(tmp_path / "theirs.jsonl", state=state)
    anyio.run(_held, holder)
    try:
        assert _crawl("--out", str(tmp_path / "mine.jsonl"), "--state", str(state)) == 2
    finally:
        anyio.run(holder.aclose)
    assert f"state file {state}: in use by another snapcrawl run" in capsys.readouterr().err


def test_a_second_writer_of_a_sqlite_database_exits_2(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite database another run is writing is exit 2, naming it."""
    db = tmp_path / "inv.db"
    holder = SqliteSink(db, account="other")
    anyio.run(_held, holder)
    try:
        assert _crawl("--out", f"sqlite:///{db}") == 2
    finally:
        anyio.run(holder.aclose)
    assert "in use by another snapcrawl run" in capsys.readouterr().err


# -- one rerun rule --------------------------------------------------------------------------------------------


def test_a_finished_jsonl_state_crawl_starts_over(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same command after a finished --state crawl crawls again, into a fresh output, each snapshot once."""
    argv = ["--out", str(tmp_path / "out.jsonl"), "--state", str(tmp_path / "state.db")]
    assert _crawl(*argv) == 0
    env.stats.reset()
    capsys.readouterr()
    assert _crawl(*argv) == 0
    assert env.stats.requests > 0
    assert "done earlier" not in capsys.readouterr().err
    ids = _ids(tmp_path / "out.jsonl")
    assert len(ids) == env.dataset.total and set(ids.values()) == {1}


def test_resume_finished_skips_what_the_finished_crawl_did(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume-finished keeps the old rule: a finished crawl run again skips every complete volume."""
    argv = ["--out", str(tmp_path / "out.jsonl"), "--state", str(tmp_path / "state.db")]
    argv += ["--volumes-from", str(tmp_path / "ids.txt")]
    (tmp_path / "ids.txt").write_text("\n".join(env.dataset.volume_ids[:20]), encoding="utf-8")
    assert _crawl(*argv) == 0
    before = (tmp_path / "out.jsonl").read_bytes()
    env.stats.reset()
    capsys.readouterr()
    assert _crawl(*argv, "--resume-finished") == 0
    assert env.stats.requests == 0
    assert "20 done earlier" in capsys.readouterr().err
    assert (tmp_path / "out.jsonl").read_bytes() == before


def test_resume_finished_needs_a_state_file(env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--resume-finished without --state (or into a database) is a usage error."""
    assert _crawl("--out", str(tmp_path / "out.jsonl"), "--resume-finished") == 2
    assert _crawl("--out", f"sqlite:///{tmp_path / 'x.db'}", "--resume-finished") == 2
    assert capsys.readouterr().err.count("--resume-finished") >= 2
    assert _crawl("--output", "csv", "--resume-finished") == 2  # printed to stdout: nothing to resume


def test_a_finished_sqlite_crawl_starts_over(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database destination follows the same rule: the same command after a finished crawl crawls again."""
    db = tmp_path / "inv.db"
    assert _crawl("--out", f"sqlite:///{db}") == 0
    env.stats.reset()
    capsys.readouterr()
    assert _crawl("--out", f"sqlite:///{db}") == 0
    assert env.stats.requests > 0
    assert "done earlier" not in capsys.readouterr().err
    assert len(_rows(db)) == env.dataset.total


# -- a crawl that stops early --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_simulator() -> Iterator[Simulator]:
    """2,000 volumes answering in 10-30 ms, so that a crawl takes long enough to be interrupted."""
    with run_in_thread(volumes=2000, seed=29, faults=Faults(latency=(0.01, 0.03))) as sim:
        yield sim


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_crawl_keeps_the_previous_output(slow_simulator: Simulator, tmp_path: Path, signum: int) -> None:
    """Stopped by a signal, a crawl without --state leaves the old file whole and names the partial output."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"yesterday\n")
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", slow_simulator.url]
    argv += ["--out", str(out), "--concurrency", "8", "--no-progress"]
    env = os.environ | {
        "SCP_ACCESS_KEY": slow_simulator.credentials.access_key,
        "SCP_SECRET_KEY": slow_simulator.credentials.secret_key,
    }
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # noqa: S603
    partial = tmp_path / "out.jsonl.partial"
    deadline = time.monotonic() + 20
    while not (partial.exists() and partial.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 128 + signum, err
    assert out.read_bytes() == b"yesterday\n"
    assert f"partial output is in {partial}" in err
    assert 0 < len(_ids(partial)) < slow_simulator.dataset.total


def test_a_summary_that_cannot_be_written_is_refused_before_the_crawl(
    env: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary-json in a missing directory is exit 2 before any request, and the output is left alone."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"yesterday\n")
    summary = tmp_path / "missing" / "summary.json"
    assert _crawl("--out", str(out), "--summary-json", str(summary), "--volume", env.dataset.volume_ids[0]) == 2
    assert "cannot write --summary-json" in capsys.readouterr().err
    assert out.read_bytes() == b"yesterday\n"
    assert env.stats.requests == 0
