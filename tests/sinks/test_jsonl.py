"""The JSON Lines sink: output cut back to the committed length, fallback markers, a locked state file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from snapcrawl import BusyError, SinkError
from snapcrawl.sinks import JsonLinesSink, VolumeProgress
from snapcrawl.sinks.jsonl import Checkpoint, JsonLinesWriter

from .conftest import page, snapshots

SETTINGS = {"endpoint": "http://127.0.0.1:1", "name": None, "sort": None}


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_bytes().splitlines()]


async def test_resume_cuts_the_output_back_and_keeps_fallback_markers(tmp_path: Path) -> None:
    """Lines past the last commit are cut off on resume; progress holds the last page's ids newest first."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    sink = JsonLinesSink(out, state=state, settings=SETTINGS)
    assert await sink.load_progress() == {}
    await sink.write(page("v1", 1, snapshots("v1", 3, start=3)))
    await sink.write(page("v2", 1, snapshots("v2", 2), last=True))
    await sink.aclose()
    with out.open("ab") as file:
        file.write(b'{"id": "written after the last commit"}\n')

    again = JsonLinesSink(out, state=state, settings=SETTINGS)
    assert await again.load_progress() == {
        "v1": VolumeProgress("partial", ("v1-s3", "v1-s4", "v1-s5"), 1),
        "v2": VolumeProgress("done", ("v2-s0", "v2-s1"), 1),
    }
    assert await again.delivered_ids("v1") == {"v1-s3", "v1-s4", "v1-s5"}
    await again.write(page("v1", 2, snapshots("v1", 3), last=True))
    await again.complete()
    await again.aclose()
    assert sorted(_ids(out)) == sorted([f"v1-s{n}" for n in range(6)] + ["v2-s0", "v2-s1"])


async def test_a_second_run_on_the_state_file_fails_at_once(tmp_path: Path) -> None:
    """Two runs on one state file would interleave their records: the second is refused while the first runs."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    first = JsonLinesSink(out, state=state, settings=SETTINGS)
    await first.load_progress()
    second = JsonLinesSink(out, state=state, settings=SETTINGS)
    with pytest.raises(BusyError, match="in use by another snapcrawl run"):
        await second.load_progress()
    await second.aclose()
    await first.aclose()


async def test_a_failed_record_is_never_followed_by_a_commit_that_covers_it(tmp_path: Path) -> None:
    """When recording progress fails, later flushes commit nothing, and a resume rewrites those lines once."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    sink = JsonLinesSink(out, state=state, settings=SETTINGS)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 2), last=True))
    await sink.flush()
    blocker = sqlite3.connect(state, isolation_level=None)  # another writer on the state database
    blocker.execute("BEGIN IMMEDIATE")
    await sink.write(page("v2", 1, snapshots("v2", 2), last=True))
    with pytest.raises(SinkError, match="locked"):
        await sink.flush()
    blocker.execute("ROLLBACK")
    blocker.close()
    with pytest.raises(SinkError, match="earlier commit failed"):
        await sink.flush()
    await sink.aclose()

    again = JsonLinesSink(out, state=state, settings=SETTINGS)
    assert set(await again.load_progress()) == {"v1"}
    await again.write(page("v2", 1, snapshots("v2", 2), last=True))
    await again.aclose()
    assert sorted(_ids(out)) == ["v1-s0", "v1-s1", "v2-s0", "v2-s1"]


def test_writer_does_not_commit_after_a_failed_record(tmp_path: Path) -> None:
    """The synchronous writer (today's CLI path) also stops committing once a record failed."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    with Checkpoint(state, output=out, settings={}) as checkpoint, checkpoint.open_output() as file:
        writer = JsonLinesWriter(file, checkpoint=checkpoint, commit_interval=3600)
        writer.write_page(page("v1", 1, snapshots("v1", 1), last=True))
        writer.flush()
        committed = checkpoint.output_offset
        blocker = sqlite3.connect(state, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError):
            writer.write_page(page("v2", 1, snapshots("v2", 1), last=True))
        blocker.execute("ROLLBACK")
        blocker.close()
        writer.flush()
        assert checkpoint.output_offset == committed


async def test_without_state_the_file_is_written_from_scratch(tmp_path: Path) -> None:
    """Without a state file nothing resumes: the output is replaced at the end, and no ids are reported delivered."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"old\n")
    sink = JsonLinesSink(out)
    assert await sink.load_progress() == {}
    await sink.write(page("v1", 1, snapshots("v1", 2), last=True))
    assert await sink.delivered_ids("v1") == set()
    assert out.read_bytes() == b"old\n"  # whole until the new one is
    await sink.complete()
    await sink.aclose()
    assert _ids(out) == ["v1-s1", "v1-s0"]
    assert sink.kept is None
    assert os.listdir(tmp_path) == ["out.jsonl"]


async def test_without_state_a_crawl_that_stops_early_keeps_the_old_file(tmp_path: Path) -> None:
    """Closed without complete(), the old output stays byte for byte and the partial one is kept beside it."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"old\n")
    sink = JsonLinesSink(out)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 2), last=True))
    await sink.aclose()
    assert out.read_bytes() == b"old\n"
    assert sink.kept == tmp_path / "out.jsonl.partial"
    assert _ids(sink.kept) == ["v1-s1", "v1-s0"]

    nothing = JsonLinesSink(out)  # a run that wrote nothing leaves no partial file either
    await nothing.load_progress()
    await nothing.aclose()
    assert nothing.kept is None
    assert os.listdir(tmp_path) == ["out.jsonl"]


async def test_a_symlinked_output_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    """A destination that is a symbolic link stays one: the file it points to gets the new output."""
    real, link = tmp_path / "real.jsonl", tmp_path / "link.jsonl"
    real.write_bytes(b"old\n")
    link.symlink_to(real)
    sink = JsonLinesSink(link)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 1), last=True))
    await sink.complete()
    await sink.aclose()
    assert link.is_symlink()
    assert _ids(real) == ["v1-s0"]
