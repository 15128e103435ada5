"""A worker: its options checked when it is made, what it counts, and which volumes the output already holds."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from snapcrawl import ConfigError, TransportError
from snapcrawl._models import Page
from snapcrawl.queue import JobQueue, Worker
from snapcrawl.queue._job import WORKER_ALIVE_SECONDS
from snapcrawl.queue._worker import AckingSink
from snapcrawl.sinks import VolumeProgress

from ..logs import capture_logs
from .memory import MemorySink
from .test_queue import VOLUMES, _crawl_all

NO_QUEUE = cast(JobQueue, object())  # never reached: the options are refused first


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"batch": 0}, "batch"),
        ({"ack_every": 0}, "ack_every"),
        ({"batch": 0, "ack_every": 0}, "batch"),
        ({"claim_after": 0.0}, "claim_after"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Worker(NO_QUEUE, **options)


def test_the_smallest_options_are_accepted() -> None:
    worker = Worker(NO_QUEUE, batch=1, ack_every=1, claim_after=0.1)
    assert (worker.batch, worker.ack_every) == (1, 1)


async def test_a_lone_worker_counts_every_volume_it_took(redis_client: aioredis.Redis) -> None:
    """``taken`` (what `snapcrawl job work` reports) counts each volume read from the stream once; none claimed."""
    queue = JobQueue(redis_client, "counted")
    await queue.enqueue(VOLUMES[:10])
    async with Worker(queue, batch=4, poll=0.1) as worker:
        crawled = await _crawl_all(worker, worker.sink(MemorySink()))
    assert sorted(crawled) == sorted(VOLUMES[:10])
    assert (worker.taken, worker.claimed) == (10, 0)


async def test_only_volumes_done_in_the_output_are_skipped(redis_client: aioredis.Redis) -> None:
    """A volume the output holds as done is acknowledged without a crawl; a partial or failed one is crawled."""
    queue = JobQueue(redis_client, "resumed")
    await queue.enqueue(VOLUMES[:4])
    progress: dict[str | None, VolumeProgress] = {
        VOLUMES[0]: VolumeProgress("partial", ("s9",), 1),
        VOLUMES[1]: VolumeProgress("done", ("s3",), 2),
        VOLUMES[2]: VolumeProgress("failed"),
    }
    async with Worker(queue, batch=4, poll=0.1) as worker:
        sink = worker.sink(MemorySink(progress))
        await sink.load_progress()  # as the crawl does first
        crawled = await _crawl_all(worker, sink)
    assert sorted(crawled) == [VOLUMES[0], VOLUMES[2], VOLUMES[3]]
    assert (await queue.status()).done == 4


def test_a_worker_beats_often_enough_to_survive_two_missed_beats() -> None:
    """Others count a worker alive while its last beat is under WORKER_ALIVE_SECONDS old: it beats three times
    in that span (and three times per claim_after), so a blocked loop or a Redis blip costing two beats does not
    get its volumes claimed."""
    assert Worker(NO_QUEUE)._heartbeat.period <= WORKER_ALIVE_SECONDS / 3
    assert Worker(NO_QUEUE, claim_after=0.3)._heartbeat.period == pytest.approx(0.1)


async def test_stale_entries_are_claimed_after_exactly_claim_after(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle time Redis is asked for is claim_after in milliseconds, no more: a dead worker's volumes are
    taken over as soon as the user said, not a moment later (2.5 s is 2500 ms)."""
    asked: dict[str, Any] = {}

    async def xautoclaim(*args: Any, **kwargs: Any) -> list[Any]:
        asked.update(kwargs)
        return ["0-0", [], []]

    worker = Worker(JobQueue(redis_client, "claims"), claim_after=2.5)
    monkeypatch.setattr(redis_client, "xautoclaim", xautoclaim)
    assert await worker._claim() == []
    assert asked["min_idle_time"] == 2500


def test_the_poll_is_the_users_unless_it_would_miss_claims() -> None:
    """A worker polls at the given pace, capped at half of claim_after so that a dead worker's volumes are seen
    in time; no faster than that, since every poll costs Redis commands (1 s stays 1 s; 60 s with claim_after
    1 s becomes 0.5 s)."""
    assert Worker(NO_QUEUE, poll=1.0, claim_after=60.0).poll == 1.0
    assert Worker(NO_QUEUE, poll=60.0, claim_after=1.0).poll == 0.5


async def test_acknowledgements_are_batched_every_ack_every_volumes_after_each_flush(
    redis_client: aioredis.Redis,
) -> None:
    """With ack_every=2 the sink commits after every second finished volume, counted afresh after any flush
    (one the crawl asked for included), so acknowledgements wait neither less nor longer than asked."""
    inner = MemorySink()
    sink = Worker(JobQueue(redis_client, "acks"), ack_every=2).sink(inner)
    await sink.write(Page("a", 1, [], last=True))
    assert inner.flushes == 0
    await sink.flush()  # the crawl's own commit
    await sink.write(Page("b", 1, [], last=True))
    assert inner.flushes == 1
    await sink.write(Page("c", 1, [], last=True))
    assert inner.flushes == 2


async def test_by_default_a_dying_worker_leaves_at_most_16_volumes_to_crawl_again(
    redis_client: aioredis.Redis,
) -> None:
    """Unacknowledged finished volumes are crawled again by another worker after a crash: by default the sink
    commits (and acknowledges) every 16 finished volumes, which bounds that waste."""
    inner = MemorySink()
    sink = Worker(JobQueue(redis_client, "acks")).sink(inner)
    for n in range(15):
        await sink.write(Page(f"v{n}", 1, [], last=True))
    assert inner.flushes == 0
    await sink.write(Page("v15", 1, [], last=True))
    assert inner.flushes == 1


async def test_a_failed_heartbeat_is_a_warning_not_the_end_of_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis unreachable for one beat: the worker warns and beats again next period; the next read tells whether
    Redis is really gone."""

    async def unreachable() -> None:
        raise TransportError("redis 127.0.0.1:9: heartbeat: connection refused")

    worker = Worker(JobQueue(aioredis.Redis(port=9), "beats"))
    monkeypatch.setattr(worker, "_heartbeat_once", unreachable)
    with capture_logs() as logs:
        await worker._beat()
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["worker.heartbeat_failed"]


async def test_by_default_a_worker_takes_16_volumes_at_a_time(redis_client: aioredis.Redis) -> None:
    """A worker reads 16 entries per round trip by default: few enough that a dead worker's share waits little
    for claim_after, many enough that the stream is not read once per volume."""
    queue = JobQueue(redis_client, "batched")
    await queue.enqueue(VOLUMES[:20])
    async with Worker(queue) as worker:
        worker.sink(MemorySink())
        assert await anext(worker.volumes()) == VOLUMES[0]
        assert (await queue.status()).in_progress == 16  # read from the stream, held by this worker


def test_the_acking_sink_exposes_the_sink_it_wraps() -> None:
    """``Crawler.crawl_into`` reaches a database sink through the worker's wrapper to bind its account."""
    inner = MemorySink()
    wrapper = Worker(NO_QUEUE).sink(inner)
    assert isinstance(wrapper, AckingSink)
    assert wrapper.inner is inner
