"""A worker's options are checked when it is made, each bad one named, before it touches the queue."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from snapcrawl import ConfigError
from snapcrawl.queue import JobQueue, Worker

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
