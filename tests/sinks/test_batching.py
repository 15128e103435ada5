"""When a sink commits: as soon as a batch's rows are due, whatever the clock says."""

from __future__ import annotations

from pathlib import Path

import anyio

from snapcrawl.sinks import SqliteSink
from snapcrawl.sinks._batch import Batch

from .conftest import page, snapshots


async def test_a_page_larger_than_the_batch_is_committed_at_once(tmp_path: Path) -> None:
    """With the commit interval never reached (a clock that stands still), rows at or over ``batch_rows`` commit."""
    sink = SqliteSink(tmp_path / "inventory.db", batch_rows=2, max_rows=10, clock=lambda: 0.0, account="acct")
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


async def test_a_writer_cancelled_mid_commit_leaves_the_commit_whole(tmp_path: Path) -> None:
    """Cancelling the task whose write started a commit (a crawl stopped by Ctrl-C) neither breaks the sink nor
    loses the bookkeeping of the commit: it finishes, and the sink goes on."""
    sink = SqliteSink(tmp_path / "inventory.db", batch_rows=1, max_rows=10, account="acct")
    await sink.load_progress()
    commit_batch = sink._commit_batch
    started = anyio.Event()

    async def slow_commit(batch: Batch) -> None:  # as a database across the network: the commit awaits
        started.set()
        await anyio.sleep(0.3)
        await commit_batch(batch)

    sink._commit_batch = slow_commit  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink.write, page("v1", 1, snapshots("v1", 2), last=True))
        await started.wait()
        tg.cancel_scope.cancel()
    assert (sink.commits, sink.rows) == (1, 2)
    await sink.write(page("v2", 1, snapshots("v2", 1), last=True))
    await sink.aclose()
    assert sink.rows == 3
