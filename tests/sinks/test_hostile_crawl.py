"""300 normal volumes and one of each hostile kind, crawled by the CLI into each destination, twice.

Every normal snapshot is committed once, the inclusive-marker volume is complete, every hostile volume is either
stored or named on stderr, no output holds a duplicate, no traceback, and no raw escape sequence reaches stderr.
"""

# Our own interpreter and arguments:
# ruff: noqa: S603

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.abc
import asyncpg
import msgspec
import pytest

from snapcrawl import UnfitValueError
from snapcrawl.simulator import Faults, Simulator, run_in_thread

from .conftest import Inventory, _create_database, _drop_database, page, snapshots

PAGE = 10  # small pages, so that the cycle and the inclusive marker show within one volume
NORMAL = 300
#: Which volumes each destination must store (the rest of the hostile ones it must name as failed).
STORED = {
    "jsonl": {"inclusive", "nul", "big_int", "huge"},
    "sqlite": {"inclusive", "nul", "huge"},
    "postgres": {"inclusive", "huge"},
}
NAMED = {"cycle", "far_date", "escape", "malformed", "nul", "big_int"}


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Simulator, list[str], dict[str, str]]]:
    """A simulator whose first 300 volumes behave, and one volume of each hostile kind after them."""
    with run_in_thread(volumes=NORMAL + 60, seed=19) as sim:
        data = sim.dataset
        normal = data.volume_ids[:NORMAL]
        spare = sorted(data.volume_ids[NORMAL:], key=data.count, reverse=True)
        kinds = ["cycle", "inclusive", "nul", "big_int", "far_date", "escape", "malformed", "huge"]
        chosen = dict(zip(kinds, spare, strict=False))
        assert data.count(chosen["cycle"]) > 2 * PAGE and data.count(chosen["inclusive"]) > 2 * PAGE
        sim.faults = Faults(
            cycle_volumes=frozenset({chosen["cycle"]}),
            inclusive_volumes=frozenset({chosen["inclusive"]}),
            nul_volumes=frozenset({chosen["nul"]}),
            big_int_volumes=frozenset({chosen["big_int"]}),
            far_date_volumes=frozenset({chosen["far_date"]}),
            escape_volumes=frozenset({chosen["escape"]}),
            malformed_volumes=frozenset({chosen["malformed"]}),
            huge_volumes=frozenset({chosen["huge"]}),
            huge_body_bytes=2 * 1024 * 1024,
        )
        yield sim, normal, chosen


def _crawl(sim: Simulator, ids_file: Path, out: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
    env |= {
        "HOME": str(home),
        "SCP_ENDPOINT": sim.url,
        "SCP_ACCESS_KEY": sim.credentials.access_key,
        "SCP_SECRET_KEY": sim.credentials.secret_key,
    }
    argv = ["crawl", "--volumes", str(ids_file), "--out", out, "--page-size", str(PAGE), "--max-retries", "1"]
    return subprocess.run(
        [sys.executable, "-m", "snapcrawl.cli", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=50,
        check=False,
        env=env,
    )


async def _rows(kind: str, out: str) -> list[tuple[str, str]]:
    """(id, volume_id) of every row or line the destination holds."""
    if kind == "jsonl":
        lines = (await anyio.Path(out).read_text(encoding="utf-8")).splitlines()
        return [(row["id"], row["volume_id"]) for row in map(json.loads, lines)]
    if kind == "sqlite":
        with sqlite3.connect(out.removeprefix("sqlite:///")) as db:
            return list(db.execute("SELECT id, volume_id FROM snapshots"))
    conn = await asyncpg.connect(out)
    try:
        return [(row["id"], row["volume_id"]) for row in await conn.fetch("SELECT id, volume_id FROM snapshots")]
    finally:
        await conn.close()


@pytest.fixture(params=["jsonl", "sqlite", "postgres"])
async def destination(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(kind, --out) of an empty destination of each kind."""
    kind: str = request.param
    if kind == "postgres":
        url = await _create_database(request.getfixturevalue("postgres_server"))
        yield kind, url
        await _drop_database(url)
    else:
        yield kind, str(tmp_path / "out.jsonl") if kind == "jsonl" else f"sqlite:///{tmp_path / 'out.db'}"


async def test_hostile_volumes_cost_themselves_only(
    hostile: tuple[Simulator, list[str], dict[str, str]], destination: tuple[str, str], tmp_path: Path
) -> None:
    """Normal volumes all committed once, hostile ones stored or named, on the first run and on the rerun."""
    sim, normal, chosen = hostile
    kind, out = destination
    data = sim.dataset
    ids_file = tmp_path / "ids.txt"
    bad_id = "bad\x00id\x1b[2J"
    ids_file.write_text("\n".join([*normal, *chosen.values(), bad_id]) + "\n", encoding="utf-8")
    for _ in range(2):  # the rerun is not blocked by the same values
        result = _crawl(sim, ids_file, out, tmp_path)
        err = result.stderr
        assert result.returncode == 1, err
        assert "Traceback" not in err
        assert "\x1b" not in err and "\x9b" not in err and "\x00" not in err
        assert "1000 complete" not in err.replace("\\x1b[1;1Hsnapcrawl: 1000 volumes (1000 complete", "")
        failed = [line for line in err.splitlines() if line.startswith("snapcrawl: failed:")]
        named = {name for name, volume in chosen.items() if any(volume in line for line in failed)}
        assert named == NAMED - STORED[kind], failed
        assert any("bad\\x00id\\x1b[2J" in line and "control characters" in line for line in failed)
        assert len(failed) == len(named) + 1
        rows = await _rows(kind, out)
        counts = Counter(snapshot_id for snapshot_id, _ in rows)
        assert set(counts.values()) == {1}  # no duplicate anywhere
        per_volume = Counter(volume for _, volume in rows)
        assert all(per_volume[volume] == data.count(volume) for volume in normal)
        for name in STORED[kind]:
            assert per_volume[chosen[name]] == data.count(chosen[name]), name
        assert 0 < per_volume[chosen["cycle"]] <= 2 * PAGE  # what the cursor gave before it looped, once


@pytest.mark.parametrize(
    "argv",
    [
        ["--out", "{disk}/out.jsonl"],
        ["--out", "{disk}/out.jsonl", "--state", "{disk}/state.db"],
        ["--out", "sqlite:///{disk}/out.db"],
        ["--volumes", "-", "--out", "{disk}/out.jsonl"],
    ],
    ids=["jsonl", "jsonl-state", "sqlite", "jsonl-stdin"],
)
def test_a_full_disk_is_one_clean_failure(env: Simulator, tiny_disk: Path, argv: list[str]) -> None:
    """Filling the disk ends in `snapcrawl: failed: ...` (exit 1), never a traceback or an exception group."""
    volumes = "\n".join(env.dataset.volume_ids)
    result = subprocess.run(
        [sys.executable, "-m", "snapcrawl.cli", "crawl", *(part.format(disk=tiny_disk) for part in argv)],
        capture_output=True,
        text=True,
        input=volumes,
        timeout=50,
        check=False,
        env=os.environ.copy(),
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("snapcrawl: failed: ") and ("No space left" in last or "disk is full" in last), last


async def test_sigterm_during_a_stalled_commit_gives_up_and_the_rerun_resumes(
    env: Simulator, pg_url: str, tmp_path: Path
) -> None:
    """A commit blocked by another session's lock does not hold SIGTERM for the 120 s command timeout: the crawl
    gives it up within seconds, says so, and the same command run again commits every snapshot once."""
    few, every = tmp_path / "few.txt", tmp_path / "every.txt"
    few.write_text("\n".join(env.dataset.volume_ids[:3]), encoding="utf-8")
    every.write_text("\n".join(env.dataset.volume_ids), encoding="utf-8")
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--out", pg_url, "--volumes"]
    first = await anyio.run_process([*argv, str(few)], check=False)
    assert first.returncode == 0, first.stderr  # the table exists now
    blocker = await asyncpg.connect(pg_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE snapshots IN ACCESS EXCLUSIVE MODE")
        async with await anyio.open_process([*argv, str(every)]) as proc:
            for _ in range(400):  # until its first commit waits for the lock
                await blocker.execute("SELECT pg_stat_clear_snapshot()")  # else one snapshot per transaction
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if waiting:
                    break
                await anyio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.stderr is not None
            with anyio.fail_after(40):  # far under the 120 s command timeout
                err = (await proc.stderr.receive(1 << 20)).decode()
                while chunk := await _more(proc):
                    err += chunk
                await proc.wait()
        assert waiting, f"the crawl never reached its first commit: {err}"
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err
        assert "gave up waiting 5 s for the destination" in err and "rows taken were not committed" in err, err
        assert "interrupted by SIGTERM; run the same command again to resume" in err
        await transaction.rollback()
    finally:
        await blocker.close()
    again = await anyio.run_process([*argv, str(every)], check=False)
    assert again.returncode == 0, again.stderr
    rows = await _rows("postgres", pg_url)
    assert len(rows) == len(set(rows)) == env.dataset.total


async def _more(proc: anyio.abc.Process) -> str:
    """The next bytes of ``proc``'s stderr, or ``""`` at its end."""
    assert proc.stderr is not None
    try:
        return (await proc.stderr.receive(1 << 20)).decode()
    except anyio.EndOfStream:
        return ""


@pytest.mark.parametrize(
    ("field", "value", "fits"),
    [
        ("description", "a\x00b", {"sqlite"}),
        ("metadata", {"k\x00": "v"}, {"sqlite"}),
        ("metadata", {"k": ["deep", {"x": "v\x00"}]}, {"sqlite"}),
        ("metadata", {"k": "a literal \\u0000 is fine"}, {"sqlite", "postgres"}),
        ("id", "nul\x00id", {"sqlite"}),
        ("size", 2**63, set()),
        ("size", -(2**63) - 1, set()),
        ("size", 2**63 - 1, {"sqlite", "postgres"}),
    ],
)
async def test_a_value_the_table_cannot_hold_is_named_and_blocks_nothing(
    inventory: Inventory, field: str, value: object, fits: set[str]
) -> None:
    """Stored as it is, or an UnfitValueError naming the snapshot and field with nothing of its page taken; the
    sink stays usable, and the next page commits."""
    bad = msgspec.structs.replace(snapshots("v1", 1)[0], **{field: value})
    sink = inventory.sink()
    async with sink:
        if inventory.kind in fits:
            await sink.write(page("v1", 1, [bad], last=True))
        else:
            with pytest.raises(UnfitValueError) as info:
                await sink.write(page("v1", 1, [bad], last=True))
            assert (info.value.snapshot_id, info.value.field, info.value.volume_id) == (bad.id, field, "v1")
            assert field in str(info.value) and repr(bad.id) in str(info.value)
        await sink.write(page("v2", 1, snapshots("v2", 3), last=True))
    expected = {"v2-s0", "v2-s1", "v2-s2"} | ({bad.id} if inventory.kind in fits else set())
    assert set(await inventory.ids()) == expected
