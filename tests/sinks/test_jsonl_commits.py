"""The synchronous JSON Lines writer commits its checkpoint every ``commit_interval`` seconds, and on ``flush``."""

from __future__ import annotations

from pathlib import Path

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
