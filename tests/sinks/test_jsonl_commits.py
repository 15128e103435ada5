"""JSON Lines with a state file: when the checkpoint commits, and what it keeps of a failed volume."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from snapcrawl.sinks import JsonLinesSink
from snapcrawl.sinks.jsonl import Checkpoint, JsonLinesWriter

from .conftest import page, snapshots


def test_pages_within_the_interval_wait_for_flush_and_an_interval_of_0_commits_each(tmp_path: Path) -> None:
    """Within an hour's interval, pages are recorded but not committed until ``flush``; with 0, each page is."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    with Checkpoint(state, output=out, settings={}) as checkpoint, checkpoint.open_output() as file:
        writer = JsonLinesWriter(file, checkpoint=checkpoint, commit_interval=3600)
        start = checkpoint.output_offset
        writer.write_page(page("v1", 1, snapshots("v1", 2), last=True))
        assert checkpoint.output_offset == start
        writer.flush()
        flushed = checkpoint.output_offset
        assert flushed > start
        eager = JsonLinesWriter(file, checkpoint=checkpoint, offset=writer.offset, commit_interval=0)
        eager.write_page(page("v2", 1, snapshots("v2", 2), last=True))
        assert checkpoint.output_offset > flushed


async def test_a_failed_volume_keeps_its_error_in_the_state_file(tmp_path: Path) -> None:
    """``snapcrawl progress`` shows why a volume failed: the state file keeps the crawl's own words."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.db"
    sink = JsonLinesSink(out, state=state)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 2), last=True))
    await sink.fail("v2", "server error (HTTP 500) (volume v2, page 1)")
    await sink.aclose()
    with contextlib.closing(sqlite3.connect(state)) as db:
        rows = db.execute("SELECT volume_id, status, error FROM volumes ORDER BY volume_id").fetchall()
    assert rows == [("v1", "done", None), ("v2", "failed", "server error (HTTP 500) (volume v2, page 1)")]
