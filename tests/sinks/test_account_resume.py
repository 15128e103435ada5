"""The whole-account listing into a database: fetched concurrently, and after a SIGKILL resumed from its ranges."""

# ruff: noqa: S603 - the CLI is run as a subprocess, with fixed arguments

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest

from snapcrawl import Crawler
from snapcrawl.simulator import Faults, Simulator, run_in_thread

from .conftest import Inventory

PAGE = 20


@pytest.fixture(scope="module")
def slow_account() -> Iterator[Simulator]:
    """About 2,250 snapshots answering in 20-40 ms: a 20-a-page account listing, 2 at a time, takes seconds."""
    with run_in_thread(volumes=300, seed=5, faults=Faults(latency=(0.02, 0.04))) as sim:
        yield sim


def _fan_out_pages(total: int) -> int:
    """Requests of one fresh fan-out over ``total`` snapshots (pages overlap by one), nothing moving."""
    return 1 + math.ceil(max(total - PAGE, 0) / (PAGE - 1))


def _argv(sim: Simulator, url: str) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--out", url, "--prune"]
    argv += ["--page-size", str(PAGE), "--concurrency", "2", "--no-progress"]
    env = os.environ | {"SCP_ACCESS_KEY": sim.credentials.access_key, "SCP_SECRET_KEY": sim.credentials.secret_key}
    return argv, env


async def _ranges(inventory: Inventory) -> int:
    try:
        return int((await inventory.query("SELECT count(*) FROM snapcrawl_ranges"))[0][0])
    except Exception:  # not created yet, or locked mid-commit: nothing committed to count
        return 0


@pytest.mark.timeout(120)
async def test_sigkill_then_rerun_fetches_only_what_is_missing(slow_account: Simulator, inventory: Inventory) -> None:
    """Killed once some ranges are committed, the rerun refetches page 1 and the missing pages only, and the table
    ends with every snapshot of the account once."""
    argv, env = _argv(slow_account, inventory.url)
    total = slow_account.dataset.total
    full_crawl = _fan_out_pages(total)
    process = await anyio.open_process(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with anyio.fail_after(40):
        while process.returncode is None and await _ranges(inventory) < 10:  # noqa: ASYNC110 - polls a database
            await anyio.sleep(0.02)
    assert process.returncode is None, "the crawl ended before it could be killed: make the account slower"
    process.kill()
    with anyio.fail_after(10):
        status = await process.wait()
    assert status == -9, "the crawl ended on its own before the kill: make the account slower"
    committed = int((await inventory.query("SELECT count(*) FROM snapcrawl_ranges"))[0][0])
    assert 10 <= committed < full_crawl  # killed mid-way, with part of the listing committed

    slow_account.stats.reset()
    finished = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    )
    assert finished.returncode == 0, finished.stderr
    rerun = slow_account.stats.requests
    # Page 1 again (for the count), then only the pages no committed range covers; a last full page's walk at most.
    assert rerun <= 1 + (full_crawl - committed) + 1, (rerun, committed, full_crawl)
    ids = await inventory.ids()
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {s["id"] for s in slow_account.dataset.snapshots()}
    assert await _ranges(inventory) == 0  # the crawl completed: its checkpoint is gone

    # Run again: a new crawl, fanned out in full, and still every snapshot once.
    slow_account.stats.reset()
    again = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    )
    assert again.returncode == 0, again.stderr
    assert slow_account.stats.requests == full_crawl
    assert sorted(await inventory.ids()) == ids


async def test_account_listing_into_a_database_fans_out(slow_account: Simulator, inventory: Inventory) -> None:
    """Into a database, the account's pages are in flight together (not one marker walk): as many as allowed."""
    slow_account.stats.reset()
    async with Crawler(
        endpoint=slow_account.url, credentials=slow_account.credentials, page_size=PAGE, concurrency=8
    ) as crawler:
        sink = inventory.sink()
        try:
            result = await crawler.crawl_into(None, sink)
        finally:
            await sink.aclose()
    assert not result.failures
    assert slow_account.stats.max_in_flight > 1
    assert slow_account.stats.requests == _fan_out_pages(slow_account.dataset.total)
    ids = await inventory.ids()
    assert len(ids) == len(set(ids)) == slow_account.dataset.total


def test_fan_out_pages_counts_overlap() -> None:
    """The helper's arithmetic: one page, then pages of ``PAGE - 1`` new snapshots each."""
    assert _fan_out_pages(PAGE) == 1
    assert _fan_out_pages(PAGE + 1) == 2
    assert _fan_out_pages(PAGE + PAGE - 1) == 2
    assert _fan_out_pages(PAGE + PAGE) == 3
