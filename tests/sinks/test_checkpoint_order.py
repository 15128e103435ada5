"""The checkpoint never runs ahead of the rows: a row write that fails leaves no progress saying "done".

A trigger makes the database refuse one volume's rows, after the progress upsert of the same commit would have
succeeded. Had progress been committed first, the resumed run would skip that volume and its rows would be lost
for good; with rows and progress in one transaction, the resumed run crawls it again and every snapshot is there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snapcrawl import Crawler, SinkError
from snapcrawl.simulator import Simulator, run_in_thread

from .conftest import Inventory
from .driver import crawl_into_sink, crawl_settings

REFUSED = "injected failure: rows refused"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """Six volumes of a few pages each."""
    with run_in_thread(volumes=6, seed=5) as sim:
        yield sim


async def _refuse_rows_of(inventory: Inventory, volume: str) -> None:
    """Install a trigger that makes every insert of ``volume``'s rows fail (the table must exist)."""
    if inventory.kind == "sqlite":
        statements = [
            f"CREATE TRIGGER refuse BEFORE INSERT ON snapshots WHEN NEW.volume_id = '{volume}' "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        ]
    else:
        statements = [
            f"CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{REFUSED}'; END $$",
            f"CREATE TRIGGER refuse BEFORE INSERT ON snapshots FOR EACH ROW WHEN (NEW.volume_id = '{volume}') "
            "EXECUTE FUNCTION refuse()",
        ]
    for statement in statements:
        await inventory.query(statement)


async def _crawl(sim: Simulator, inventory: Inventory) -> None:
    crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=4, page_size=50)
    sink = inventory.sink(settings=crawl_settings(sim.url), batch_rows=1)  # every page its own commit
    await crawl_into_sink(crawler, sim.dataset.volume_ids, sink)


async def test_refused_rows_leave_no_done_progress_and_the_resumed_run_crawls_them(
    simulator: Simulator, inventory: Inventory
) -> None:
    """The refused volume is not marked done (nor resumed past its lost rows); the rerun brings every row once."""
    sim = simulator
    victim = sim.dataset.volume_ids[2]
    settings = crawl_settings(sim.url)
    opened = inventory.sink(settings=settings)
    await opened.load_progress()  # creates the table the trigger goes on
    await opened.aclose()
    await _refuse_rows_of(inventory, victim)

    with pytest.raises(SinkError, match=REFUSED):
        await _crawl(sim, inventory)

    stored = {row[0] for row in await inventory.query(f"SELECT id FROM snapshots WHERE volume_id = '{victim}'")}  # noqa: S608
    assert stored == set()
    progress = await inventory.query(f"SELECT status FROM snapcrawl_progress WHERE volume = '{victim}'")  # noqa: S608
    assert progress == []  # not "done", and no markers past rows that were never written
    for volume, status in await inventory.query("SELECT volume, status FROM snapcrawl_progress"):
        # Whatever progress did commit is covered by rows: a resume skips nothing it lacks.
        rows = await inventory.query(f"SELECT count(*) FROM snapshots WHERE volume_id = '{volume}'")  # noqa: S608
        assert rows[0][0] > 0, (volume, status)

    await inventory.query("DROP TRIGGER refuse" + (" ON snapshots" if inventory.kind == "postgres" else ""))
    await _crawl(sim, inventory)  # the resumed run, same settings

    ids = await inventory.ids()
    assert len(ids) == len(set(ids))
    assert set(ids) == {snapshot["id"] for snapshot in sim.dataset.snapshots()}
    assert await inventory.query("SELECT count(*) FROM snapcrawl_progress") == [(0,)]  # finished
