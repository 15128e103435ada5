"""When a sink commits: as soon as a batch's rows are due, whatever the clock says."""

from __future__ import annotations

from pathlib import Path

from snapcrawl.sinks import SqliteSink

from .conftest import page, snapshots


async def test_a_page_larger_than_the_batch_is_committed_at_once(tmp_path: Path) -> None:
    """With the commit interval never reached (a clock that stands still), rows at or over ``batch_rows`` commit."""
    sink = SqliteSink(tmp_path / "inventory.db", batch_rows=2, max_rows=10, clock=lambda: 0.0)
    await sink.load_progress()
    await sink.write(page("v1", 1, snapshots("v1", 1)))
    assert (sink.commits, sink.buffered) == (0, 1)  # under the batch: it waits
    await sink.write(page("v1", 2, snapshots("v1", 3, start=1)))  # 4 rows pending, twice the batch
    assert (sink.commits, sink.buffered, sink.rows) == (1, 0, 4)
    await sink.write(page("v2", 1, snapshots("v2", 2), last=True))  # exactly the batch
    assert (sink.commits, sink.rows) == (2, 6)
    await sink.aclose()


def test_database_sinks_resume(tmp_path: Path) -> None:
    """A database keeps its checkpoint: the crawl resumes from it (and walks the account by marker for it)."""
    assert SqliteSink(tmp_path / "inventory.db").resumable is True
