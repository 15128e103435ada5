"""Crawler + queue worker + sink: two workers share a job; one dies mid-job and the other finishes it."""

from __future__ import annotations

import anyio
import redis.asyncio as aioredis

from snapcrawl import Crawler
from snapcrawl.queue import JobQueue, Worker
from snapcrawl.simulator import Simulator

from .memory import MemorySink

VOLUMES = 60


async def test_surviving_worker_finishes_a_dead_workers_volumes(
    simulator: Simulator, redis_client: aioredis.Redis
) -> None:
    """A worker that stops without acknowledging leaves its volumes pending; the other claims and completes them."""
    volumes = simulator.dataset.volume_ids[:VOLUMES]
    expected = {snap["id"] for volume in volumes for snap in simulator.dataset.snapshots(volume)}
    queue = JobQueue(redis_client, "e2e", max_deliveries=3)
    await queue.enqueue(volumes)
    doomed_sink, survivor_sink = MemorySink(), MemorySink()

    async def doomed() -> None:
        async with (
            Worker(JobQueue(redis_client, "e2e"), claim_after=0.5, name="doomed", batch=4) as worker,
            Crawler(endpoint=simulator.url, credentials=simulator.credentials, concurrency=4) as crawler,
        ):
            sink = worker.sink(doomed_sink)
            await crawler.crawl_into(worker.volumes(), sink)

    with anyio.move_on_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed)
            for _ in range(3000):  # until it has committed something and holds more (bounded: 30 s)
                if doomed_sink.committed and doomed_sink.buffered:
                    break
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # dies: nothing more committed, nothing acknowledged
    assert doomed_sink.committed
    status = await queue.status()
    assert status.in_progress > 0
    assert not status.complete

    async with (
        Worker(queue, claim_after=0.5, name="survivor", poll=0.2) as worker,
        Crawler(endpoint=simulator.url, credentials=simulator.credentials, concurrency=8) as crawler,
    ):
        sink = worker.sink(survivor_sink)
        result = await crawler.crawl_into(worker.volumes(), sink)
        await sink.aclose()
    assert not result.failures
    assert worker.claimed > 0
    status = await queue.status()
    assert status.complete
    assert (status.done, dict(status.failed), status.in_progress) == (VOLUMES, {}, 0)
    got = {snap.id for page in doomed_sink.committed + survivor_sink.committed for snap in page.snapshots}
    assert got == expected
    assert doomed_sink.committed_volumes() | survivor_sink.committed_volumes() == set(volumes)
