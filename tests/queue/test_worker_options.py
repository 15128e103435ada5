"""A worker: its options checked when it is made, what it counts, and which volumes the output already holds."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from snapcrawl import ConfigError
from snapcrawl.queue import JobQueue, Worker
from snapcrawl.sinks import VolumeProgress

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
