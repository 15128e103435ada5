"""Churn: snapshots deleted and created while they are listed, deterministic per seed, with a change history."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest

from snapcrawl.simulator import Change, Churn, Dataset, Faults, Simulator
from tests.simulator.helpers import Api, biggest_volume, demo_signer


@pytest.fixture
async def churned() -> AsyncIterator[tuple[Simulator, Api]]:
    """A fresh simulator of its own (churn changes its data) and a signed client of it."""
    async with Simulator(volumes=200, seed=11) as sim, aiohttp.ClientSession() as session:
        yield sim, Api(session, sim.url, demo_signer())


def test_history_of_deletes_and_creates() -> None:
    """Marks split the history: what existed throughout, what existed at some point, and each snapshot's volume."""
    dataset = Dataset(50, seed=3)
    volume = biggest_volume(dataset)
    listing = dataset.ordering(volume, None, (("created_at", True), ("id", True))).ids
    early = dataset.mark()
    churn = Churn(rate=1.0, deletes=0, creates=1, marker_share=1.0)
    (gone, born) = dataset.churn(churn, random.Random(1), volume, listing, 5, now=1_800_000_000)
    middle = dataset.mark()
    only_marker = Churn(rate=1.0, deletes=0, creates=0, marker_share=1.0)
    (born_gone,) = dataset.churn(only_marker, random.Random(2), volume, [born.snapshot_id], 1)
    assert (gone.op, gone.snapshot_id, gone.seq) == ("delete", listing[4], 1)
    assert (born.op, born.volume_id, born.seq) == ("create", volume, 2)
    assert born_gone == Change(3, "delete", born.snapshot_id, volume)
    assert dataset.changes(early) == [gone, born, born_gone]
    assert dataset.changes(middle) == [born_gone]
    before = set(listing)
    assert dataset.existed_throughout(early, volume) == before - {listing[4]}
    assert dataset.ever_existed(early, volume) == before | {born.snapshot_id}
    assert dataset.ever_existed(middle, volume) == (before - {listing[4]}) | {born.snapshot_id}
    assert dataset.existed_throughout(middle) == {item["id"] for item in dataset.snapshots()}
    assert dataset.count(volume) == len(listing) - 1
    assert dataset.volume_of(born.snapshot_id) == dataset.volume_of(listing[0]) == volume
    assert dataset.volume_of("nope") is None


def test_new_snapshots_are_created_now() -> None:
    """A created snapshot's ``created_at`` is the given moment, and it is listed in its volume."""
    dataset = Dataset(20, seed=4)
    volume = biggest_volume(dataset)
    churn = Churn(rate=1.0, deletes=0, creates=1, marker_share=0.0)
    (born,) = dataset.churn(churn, random.Random(5), volume, ["x"], 1, now=1_800_000_000)
    (item,) = [item for item in dataset.snapshots(volume) if item["id"] == born.snapshot_id]
    assert item["created_at"].removesuffix("Z") == "2027-01-15T08:00:00"
    assert item["volume_id"] == volume


def test_churn_repeats_for_the_same_seed() -> None:
    """The same data and the same random sequence make the same changes."""
    runs = []
    for _ in range(2):
        dataset = Dataset(100, seed=9)
        rng = random.Random(42)
        churn = Churn(rate=0.5, deletes=2, creates=2)
        for volume in dataset.volume_ids[:40]:
            listing = dataset.ordering(volume, None, (("id", False),)).ids
            dataset.churn(churn, rng, volume, listing, len(listing), now=1_800_000_000)
        runs.append(dataset.changes())
    assert runs[0] == runs[1]
    assert {change.op for change in runs[0]} == {"create", "delete"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"rate": 1.5}, ValueError), ({"deletes": -1}, ValueError), ({"busy_volumes": "vol"}, TypeError)],
)
def test_invalid_churn_is_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Probabilities in [0, 1], counts >= 0, busy volumes as a collection."""
    with pytest.raises(error, match=r"."):
        Churn(**kwargs)  # type: ignore[arg-type]


async def test_deleted_marker_is_a_scp_shaped_400(churned: tuple[Simulator, Api]) -> None:
    """When churn deletes the page's last snapshot, continuing from it is a 400 ValidationError naming the marker."""
    sim, api = churned
    volume = biggest_volume(sim.dataset)
    sim.faults = Faults(churn=Churn(rate=1.0, deletes=0, creates=0, marker_share=1.0))
    page = await api.page(volume_id=volume, limit="10")
    marker = page["snapshots"][-1]["id"]
    reply = await api.get({"volume_id": volume, "limit": "10", "marker": marker})
    assert reply.status == 400
    (error,) = reply.json()["errors"]
    assert (error["code"], error["status"]) == ("ValidationError", 400)
    assert any("marker" in detail and "not found" in detail for detail in error["detail"])
    assert sim.dataset.changes() == [Change(1, "delete", marker, volume)]


async def test_marker_walk_under_churn_stays_within_the_history(churned: tuple[Simulator, Api]) -> None:
    """A newest-first marker walk lists everything that existed throughout, and nothing that never existed."""
    sim, api = churned
    volume = biggest_volume(sim.dataset)
    mark = sim.dataset.mark()
    sim.faults = Faults(churn=Churn(rate=0.7, deletes=2, creates=2, marker_share=0.0))
    items, _ = await api.walk(volume_id=volume, limit="10")
    seen = [item["id"] for item in items]
    assert len(seen) == len(set(seen))
    must, may = sim.dataset.existed_throughout(mark, volume), sim.dataset.ever_existed(mark, volume)
    assert must <= set(seen) <= may
    assert must < may  # there was churn
    assert set(seen) - must  # and the walk saw some of what it deleted


async def test_oldest_first_walk_meets_the_new_snapshots_at_its_end(churned: tuple[Simulator, Api]) -> None:
    """New snapshots are created now, so a created_at:asc walk reaches them last."""
    sim, api = churned
    volume = biggest_volume(sim.dataset)
    mark = sim.dataset.mark()
    sim.faults = Faults(churn=Churn(rate=1.0, deletes=0, creates=1, marker_share=0.0))
    items, _ = await api.walk(volume_id=volume, limit="25", sort="created_at:asc")
    new = [index for index, item in enumerate(items) if item["id"] not in sim.dataset.existed_throughout(mark)]
    assert new
    assert new == list(range(len(items) - len(new), len(items)))
    assert {items[index]["id"] for index in new} <= sim.dataset.ever_existed(mark, volume)


async def test_account_listing_churns_across_volumes(churned: tuple[Simulator, Api]) -> None:
    """Account-wide pages churn too; created snapshots belong to the volumes ``volume_of`` names."""
    sim, api = churned
    mark = sim.dataset.mark()
    sim.faults = Faults(churn=Churn(rate=1.0, deletes=1, creates=1, marker_share=0.0))
    items, requests = await api.walk(limit="100")
    seen = {item["id"] for item in items}
    assert sim.dataset.existed_throughout(mark) <= seen <= sim.dataset.ever_existed(mark)
    changes = sim.dataset.changes(mark)
    assert len(changes) == 2 * requests
    assert len({change.volume_id for change in changes}) > 2
    owners = {item["id"]: item["volume_id"] for item in sim.dataset.snapshots()}
    assert all(sim.dataset.volume_of(change.snapshot_id) == change.volume_id for change in changes)
    created = [change for change in changes if change.op == "create" and change.snapshot_id in owners]
    assert created  # some of them are still there (others were deleted by later changes)
    assert all(owners[change.snapshot_id] == change.volume_id for change in created)


async def test_busy_volumes_churn_heavily(churned: tuple[Simulator, Api]) -> None:
    """With a zero base rate only busy volumes churn, and account-wide creations land in them."""
    sim, api = churned
    busy, calm = [volume for volume in sim.dataset.volume_ids if sim.dataset.count(volume) > 3][:2]
    sim.faults = Faults(churn=Churn(rate=0.0, busy_volumes=frozenset({busy}), busy_rate=1.0, creates=2))
    await api.page(volume_id=calm, limit="2")
    assert sim.dataset.changes() == []
    await api.page(volume_id=busy, limit="2")
    assert {change.volume_id for change in sim.dataset.changes()} == {busy}
    sim.faults = Faults(churn=Churn(rate=1.0, deletes=0, creates=3, busy_volumes=frozenset({busy})))
    mark = sim.dataset.mark()
    await api.page(limit="5")
    assert [change.volume_id for change in sim.dataset.changes(mark)] == [busy] * 3


async def test_churn_switches_on_and_off_and_repeats(churned: tuple[Simulator, Api]) -> None:
    """Churn follows the faults of the moment, and the same faults replay the same decisions."""
    sim, api = churned
    volume = biggest_volume(sim.dataset)
    churn = Faults(churn=Churn(rate=0.5, deletes=1, creates=1, marker_share=0.0))
    decisions = []
    for _ in range(2):
        sim.faults = churn
        mark = sim.dataset.mark()
        for _ in range(6):
            await api.page(volume_id=volume, limit="5")
        decisions.append([change.op for change in sim.dataset.changes(mark)])
    sim.faults = Faults()
    mark = sim.dataset.mark()
    await api.page(volume_id=volume, limit="5")
    assert sim.dataset.changes(mark) == []
    assert decisions[0] == decisions[1]
    assert decisions[0]


@pytest.mark.parametrize(
    "sort",
    [
        (("created_at", True), ("id", True)),
        (("created_at", False), ("id", False)),
        (("name", False), ("size", True), ("id", False)),
        (("status", True), ("id", True)),
    ],
    ids=["newest-first", "oldest-first", "name-then-size", "status"],
)
@pytest.mark.parametrize("name", [None, "snapshot-1"])
def test_patched_account_listing_equals_a_fresh_sort(sort: tuple[tuple[str, bool], ...], name: str | None) -> None:
    """Account-wide listings patched change by change hold what sorting the changed data afresh gives."""
    dataset = Dataset(120, seed=13)
    rng = random.Random(7)
    churn = Churn(rate=1.0, deletes=3, creates=4, marker_share=0.5)
    dataset.ordering(None, name, sort)  # cached before the changes, so that they patch it
    for step in range(30):
        listing = dataset.ordering(None, None, sort).ids
        dataset.churn(churn, rng, None, listing, min(len(listing), 1 + step * 7), now=1_800_000_000 + step % 3)
    fresh = Dataset(120, seed=13)
    fresh.__dict__.update({key: value for key, value in dataset.__dict__.items() if key != "_account_orderings"})
    fresh._account_orderings = {}
    patched = dataset.ordering(None, name, sort)
    assert patched.ids == fresh.ordering(None, name, sort).ids
    assert patched.bodies == fresh.ordering(None, name, sort).bodies
    assert len(patched.ids) > 3
    assert [patched.after(snap_id) for snap_id in patched.ids] == list(range(1, len(patched.ids) + 1))
