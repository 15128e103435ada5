"""Lossless against a living, hostile simulator: churn, replay protection, drops, caps, and the review's defects.

The contract: every snapshot that exists for the whole crawl appears exactly once; one created or deleted
meanwhile at most once. ``Dataset.mark()`` before a crawl and ``existed_throughout`` / ``ever_existed`` after it
tell exactly which snapshots those are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from snapcrawl import ConfigError, Crawler, RetryPolicy, Snapshot
from snapcrawl.simulator import Churn, Faults, Simulator, run_in_thread
from tests.helpers import collect

RETRY = RetryPolicy(max_retries=12, backoff_base=0.005, backoff_cap=0.1)


@pytest.fixture(scope="module")
def living() -> Iterator[Simulator]:
    """600 volumes that the tests churn; a module of its own, so no other test sees the changes."""
    with run_in_thread(volumes=600, seed=41) as sim:
        yield sim


def _busy(sim: Simulator, n: int) -> list[str]:
    return sorted(sim.dataset.volume_ids, key=sim.dataset.count, reverse=True)[:n]


def _check(sim: Simulator, mark: int, snapshots: list[Snapshot], volume_ids: list[str] | None = None) -> None:
    got = Counter(s.id for s in snapshots)
    scopes: list[str | None] = [*volume_ids] if volume_ids else [None]
    throughout = set().union(*(sim.dataset.existed_throughout(mark, v) for v in scopes))
    ever = set().union(*(sim.dataset.ever_existed(mark, v) for v in scopes))
    duplicates = [i for i, n in got.items() if n > 1]
    assert duplicates == [], f"{len(duplicates)} snapshots delivered more than once, e.g. {duplicates[:3]}"
    missing = throughout - got.keys()
    assert not missing, f"{len(missing)} snapshots that existed throughout were missed"
    assert got.keys() <= ever, "snapshots that never existed"
    assert all(sim.dataset.volume_of(s.id) == s.volume_id for s in snapshots)


@pytest.mark.parametrize("sort", [None, "created_at:asc", "created_at:desc", "size:asc", "name:desc"])
async def test_volumes_while_snapshots_change(living: Simulator, sort: str | None) -> None:
    """Busy volumes churned after every page, the next marker deleted often: nothing lost, nothing twice."""
    busy = _busy(living, 13)
    living.faults = Faults(churn=Churn(rate=0.05, deletes=3, creates=2, marker_share=0.5, busy_volumes=frozenset(busy)))
    volume_ids = [*busy, *living.dataset.volume_ids[:287]]
    mark = living.dataset.mark()
    try:
        crawler = Crawler(endpoint=living.url, credentials=living.credentials, page_size=50, retry=RETRY)
        async with crawler, crawler.crawl(volume_ids, sort=sort) as stream:
            snapshots = [s async for s in stream]
    finally:
        living.faults = Faults()
    assert stream.failures == []
    assert living.dataset.mark() > mark + 50  # the data really changed under the crawl
    assert stream.stats.marker_recoveries > 0  # and markers were really lost
    _check(living, mark, snapshots, volume_ids)


CHURN = Churn(rate=0.2, deletes=2, creates=2, marker_share=0.5)
#: The fault matrix of test_faults.py, each fault with churn switched on.
FAULTS_WITH_CHURN = {
    "503s": Faults(churn=CHURN, error_rate=0.1),
    "dropped-connections": Faults(churn=CHURN, drop_rate=0.05, reject_replays=True),
    "timeouts": Faults(churn=CHURN, stall_rate=0.01, stall_seconds=3.0),
    "429s-retry-after-seconds": Faults(churn=CHURN, rate_limit=800, rate_burst=20),
    "429s-no-retry-after": Faults(churn=CHURN, rate_limit=800, rate_burst=20, retry_after="none"),
    "429s-retry-after-http-date": Faults(churn=CHURN, rate_limit=800, rate_burst=20, retry_after="http-date"),
    "truncated-bodies": Faults(churn=CHURN, truncate_rate=0.05),
    "html-error-pages": Faults(churn=CHURN, html_rate=0.05),
    "gzip-and-a-capped-limit": Faults(churn=CHURN, gzip=True, max_limit=40),
}


@pytest.mark.parametrize("name", list(FAULTS_WITH_CHURN))
async def test_fault_matrix_with_churn(living: Simulator, name: str) -> None:
    """Each fault of the matrix, with snapshots changing meanwhile: the contract holds and nothing fails."""
    volume_ids = living.dataset.volume_ids[:250]
    living.faults = FAULTS_WITH_CHURN[name]
    mark = living.dataset.mark()
    try:
        async with Crawler(
            endpoint=living.url, credentials=living.credentials, page_size=25, timeout=1.0, retry=RETRY
        ) as crawler:
            snapshots, failures = await collect(crawler, volume_ids)
    finally:
        living.faults = Faults()
    assert failures == []
    assert living.dataset.mark() > mark
    _check(living, mark, snapshots, volume_ids)


async def test_account_listing_while_snapshots_change(living: Simulator) -> None:
    """The concurrent account-wide listing keeps the contract while snapshots are deleted and created."""
    living.faults = Faults(churn=Churn(rate=0.5, deletes=3, creates=3, marker_share=0.5), latency=(0.0, 0.003))
    mark = living.dataset.mark()
    try:
        async with Crawler(
            endpoint=living.url, credentials=living.credentials, page_size=100, concurrency=16, retry=RETRY
        ) as crawler:
            snapshots, failures = await collect(crawler, None)
    finally:
        living.faults = Faults()
    assert failures == []
    assert living.dataset.mark() > mark + 20
    _check(living, mark, snapshots)


async def test_server_cap_on_limit_skips_nothing(living: Simulator) -> None:
    """A server that gives 30 where 100 were asked: every volume and the account listing are still complete."""
    living.faults = Faults(max_limit=30)
    busy = _busy(living, 20)
    mark = living.dataset.mark()
    try:
        async with Crawler(endpoint=living.url, credentials=living.credentials, page_size=100) as crawler:
            volumes, failures = await collect(crawler, busy)
            account, account_failures = await collect(crawler, None)
    finally:
        living.faults = Faults()
    assert failures == account_failures == []
    _check(living, mark, volumes, busy)
    _check(living, mark, account)


async def test_replays_rejected_and_connections_dropped(living: Simulator) -> None:
    """A gateway that rejects replayed signatures, and dropped connections: no 401, no lost snapshot."""
    living.faults = Faults(reject_replays=True, drop_rate=0.02)
    mark = living.dataset.mark()
    try:
        async with Crawler(endpoint=living.url, credentials=living.credentials, retry=RETRY) as crawler:
            snapshots, failures = await collect(crawler, living.dataset.volume_ids)
    finally:
        living.faults = Faults()
    assert failures == []
    assert living.stats.dropped > 0 and living.stats.by_status.get(401, 0) == 0
    _check(living, mark, snapshots, living.dataset.volume_ids)


async def test_garbled_page_counts_once(living: Simulator) -> None:
    """A page retried after a truncated body is counted once in ``stats.pages``."""
    living.faults = Faults(truncate_rate=0.2)
    delivered = 0

    def count(page: object) -> None:
        nonlocal delivered
        delivered += 1

    try:
        async with Crawler(endpoint=living.url, credentials=living.credentials, retry=RETRY) as crawler:
            result = await crawler.crawl_into(living.dataset.volume_ids[:100], count)
    finally:
        living.faults = Faults()
    assert result.stats.retries > 0 and result.stats.requests > result.stats.pages
    assert result.stats.pages == delivered


async def test_non_string_ids_fail_alone(living: Simulator) -> None:
    """Ids that are not strings fail by name; the crawl goes on with the others."""
    real = living.dataset.volume_ids[0]
    async with Crawler(endpoint=living.url, credentials=living.credentials) as crawler:
        snapshots, failures = await collect(crawler, [7, None, real, b"bytes"])
    assert len(snapshots) == living.dataset.count(real)
    assert sorted(f.volume_id or "" for f in failures) == ["7", "None", "b'bytes'"]
    assert all(isinstance(f.error, ConfigError) and "must be a string" in str(f.error) for f in failures)


async def test_query_rejected_by_the_server_stops_the_crawl(living: Simulator) -> None:
    """A sort the server rejects fails the whole crawl once, as a ConfigError naming sort, not every volume."""
    living.stats.reset()
    async with Crawler(endpoint=living.url, credentials=living.credentials, concurrency=4) as crawler:
        with pytest.raises(ConfigError, match=r"^the server rejected sort 'colour:asc'"):
            await collect(crawler, living.dataset.volume_ids, sort="colour:asc")
    assert living.stats.requests <= 8  # not one per volume


# -- the command line ---------------------------------------------------------------------------------------------


def _cli(sim: Simulator, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SCP_ACCESS_KEY": sim.credentials.access_key, "SCP_SECRET_KEY": sim.credentials.secret_key}
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--no-progress", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, input=stdin, check=False)  # noqa: S603


def test_everything_hostile_at_once(living: Simulator, tmp_path: Path) -> None:
    """Churn, replays rejected, drops after the request was read, 429s, 503s and gzip together: every snapshot
    that existed throughout exactly once, the poison and malformed volumes named, exit 1, nothing else failed."""
    poison, malformed = living.dataset.volume_ids[5], living.dataset.volume_ids[6]
    busy = _busy(living, 10)
    living.faults = Faults(
        churn=Churn(rate=0.1, deletes=2, creates=2, marker_share=0.5, busy_volumes=frozenset(busy)),
        reject_replays=True,
        drop_rate=0.01,
        rate_limit=800,
        rate_burst=20,
        error_rate=0.02,
        gzip=True,
        fail_volumes=frozenset({poison}),
        malformed_volumes=frozenset({malformed}),
    )
    volumes = tmp_path / "volumes.txt"
    volumes.write_text("\n".join(living.dataset.volume_ids) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    mark = living.dataset.mark()
    try:
        # Retries: enough for the healthy volumes, and the poison volume (always 500) gives up within seconds.
        result = _cli(living, "--volumes", str(volumes), "--out", str(out), "--page-size", "50", "--max-retries", "6")
    finally:
        living.faults = Faults()
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("snapcrawl: failed:")]
    assert len(failed) == 2, failed
    assert any(f"volume {poison}: server error" in line for line in failed)
    assert any(f"volume {malformed}:" in line and "page 1" in line for line in failed)
    assert living.stats.by_status.get(429, 0) > 0 and living.stats.dropped > 0
    snapshots = msgspec.json.Decoder(Snapshot).decode_lines(out.read_bytes())
    healthy = [v for v in living.dataset.volume_ids if v not in (poison, malformed)]
    _check(living, mark, [s for s in snapshots if s.volume_id in healthy], healthy)


def test_query_rejected_exits_2_naming_the_option(living: Simulator) -> None:
    """``--sort`` with a key the server does not know: exit 2, the option named, few requests."""
    living.stats.reset()
    result = _cli(living, "--volume", living.dataset.volume_ids[0], "--volume", living.dataset.volume_ids[1],
                  "--sort", "colour:asc")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--sort" in result.stderr and "colour:asc" in result.stderr


def test_account_failure_reads_account_listing(living: Simulator) -> None:
    """An account-wide crawl that fails says ``account listing``, never ``volume None``."""
    living.faults = Faults(error_rate=1.0)
    try:
        result = _cli(living, "--max-retries", "0")
    finally:
        living.faults = Faults()
    assert result.returncode == 1
    assert "failed: account listing:" in result.stderr and "volume None" not in result.stderr


def test_volumes_from_a_fifo(living: Simulator, tmp_path: Path) -> None:
    """``--volumes`` naming a FIFO (as ``<(cmd)`` does) is read once, and every volume is crawled."""
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    ids = living.dataset.volume_ids[:40]

    def write() -> None:
        with fifo.open("w", encoding="utf-8") as pipe:
            pipe.write("\n".join(ids) + "\n")

    writer = threading.Thread(target=write)
    writer.start()
    out = tmp_path / "out.jsonl"
    result = _cli(living, "--volumes", str(fifo), "--out", str(out))
    writer.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == sum(living.dataset.count(v) for v in ids)
    assert "40 volumes (40 complete" in result.stderr
