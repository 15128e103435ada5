"""The job queue: idempotent enqueuing, acknowledgement after commit, claiming from dead workers, dead letters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from snapcrawl._exceptions import ConfigError, TransportError
from snapcrawl._models import Page
from snapcrawl.queue import JobQueue, Worker
from snapcrawl.queue._job import GROUP
from snapcrawl.sinks import Sink, VolumeProgress

from ..logs import capture_logs
from .memory import MemorySink

VOLUMES = [f"vol-{n:03d}" for n in range(40)]


def _last_page(volume: str) -> Page:
    return Page(volume, 1, [], last=True)


@pytest.fixture
def queue(redis_client: aioredis.Redis) -> JobQueue:
    """A job queue on the shared (flushed) server."""
    return JobQueue(redis_client, "nightly", max_deliveries=2)


async def _crawl_all(worker: Worker, sink: Sink, *, fail: frozenset[str] = frozenset()) -> list[str]:
    """Act as the crawler: take every volume the worker hands out, finish it (or fail it), until the job ends."""
    taken = []
    async for volume in worker.volumes():
        taken.append(volume)
        if volume in fail:
            await sink.fail(volume, "500 Internal Server Error (volume " + volume + ")")
        else:
            await sink.write(_last_page(volume))
    await sink.aclose()
    return taken


async def test_enqueue_is_idempotent(queue: JobQueue) -> None:
    """Enqueuing the same ids twice (two workers started alike) adds each once; the job is then sealed."""
    assert await queue.enqueue(VOLUMES) == len(VOLUMES)
    assert await queue.enqueue(iter(VOLUMES[::-1])) == 0
    status = await queue.status()
    assert (status.total, status.pending, status.in_progress, status.done) == (len(VOLUMES), len(VOLUMES), 0, 0)
    assert status.sealed
    assert not status.complete
    assert await queue.client.xlen(queue.keys.stream) == len(VOLUMES)


async def test_enqueue_from_an_async_iterable(queue: JobQueue) -> None:
    """An async iterable of ids is enqueued too (in batches)."""

    async def ids() -> AsyncIterator[str]:
        for n in range(1200):
            yield f"v{n}"

    assert await queue.enqueue(ids()) == 1200


async def test_worker_acknowledges_only_committed_volumes(queue: JobQueue) -> None:
    """A volume is acknowledged after the flush that commits its last page, not when it is written."""
    await queue.enqueue(VOLUMES[:3])
    inner = MemorySink()
    async with Worker(queue, batch=2, ack_every=100) as worker:
        sink = worker.sink(inner)
        volumes = worker.volumes()
        first = await anext(volumes)
        await sink.write(_last_page(first))
        status = await queue.status()
        assert status.done == 0
        assert status.in_progress == 2  # a batch of two taken, none acknowledged
        await sink.flush()
        assert (await queue.status()).done == 1
        rest = [volume async for volume in _finish(volumes, sink)]
    assert sorted([first, *rest]) == sorted(VOLUMES[:3])
    status = await queue.status()
    assert status.complete
    assert (status.done, status.pending, status.in_progress) == (3, 0, 0)
    assert inner.committed_volumes() == set(VOLUMES[:3])


async def _finish(volumes: AsyncIterator[str], sink: Sink) -> AsyncIterator[str]:
    async for volume in volumes:
        await sink.write(_last_page(volume))
        yield volume


async def test_two_workers_split_the_job(queue: JobQueue) -> None:
    """Two workers on one job crawl every volume once between them and both stop when it is complete."""
    await queue.enqueue(VOLUMES)
    results: dict[str, list[str]] = {}

    async def run(name: str) -> None:
        async with Worker(JobQueue(queue.client, "nightly"), name=name, batch=4, poll=0.2) as worker:
            results[name] = await _crawl_all(worker, worker.sink(MemorySink()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a")
        tg.start_soon(run, "b")
    taken = results["a"] + results["b"]
    assert sorted(taken) == sorted(VOLUMES)
    status = await queue.status()
    assert status.complete
    assert status.done == len(VOLUMES)


async def test_volumes_of_a_dead_worker_are_claimed(queue: JobQueue) -> None:
    """Volumes a worker took and never acknowledged are claimed by another after claim_after."""
    await queue.enqueue(VOLUMES[:10])
    # The first worker takes a batch and dies: no acknowledgement, no heartbeat.
    # redis-py types the reply for RESP3 (a dict); this client speaks RESP2: a list of [stream, entries].
    entries: Any = await queue.client.xreadgroup("workers", "dead-worker", {queue.keys.stream: ">"}, count=4)
    assert len(entries[0][1]) == 4
    async with Worker(queue, claim_after=0.3, poll=0.1, batch=4) as survivor:
        taken = await _crawl_all(survivor, survivor.sink(MemorySink()))
    assert sorted(taken) == sorted(VOLUMES[:10])
    assert survivor.claimed == 4
    assert (await queue.status()).done == 10


async def test_alive_worker_keeps_its_volumes(queue: JobQueue) -> None:
    """While a worker's heartbeat runs, the volumes it holds are not claimed by another, however long they take."""
    await queue.enqueue(VOLUMES[:2])
    async with Worker(queue, claim_after=0.3, batch=1, name="slow") as slow:
        sink = slow.sink(MemorySink())
        volumes = slow.volumes()
        held = await anext(volumes)
        async with Worker(queue, claim_after=0.3, poll=0.1, batch=1, name="fast") as fast:
            fast_sink = fast.sink(MemorySink())
            fast_volumes = fast.volumes()
            other = await anext(fast_volumes)
            assert other != held
            await fast_sink.write(_last_page(other))
            await fast_sink.flush()
            await anyio.sleep(0.8)  # well past claim_after: the slow worker's heartbeat keeps its volume
            with anyio.move_on_after(0.5):
                stolen = await anext(fast_volumes)
                pytest.fail(f"claimed a volume that a live worker holds: {stolen}")
        await sink.write(_last_page(held))
        await sink.flush()
        assert [volume async for volume in volumes] == []
    assert (await queue.status()).complete


async def test_failing_volume_is_dead_lettered(queue: JobQueue) -> None:
    """A volume that keeps failing is reported failed after max_deliveries, with its error; the job ends."""
    await queue.enqueue(VOLUMES[:5])
    async with Worker(queue, poll=0.1) as worker:
        taken = await _crawl_all(worker, worker.sink(MemorySink()), fail=frozenset({VOLUMES[2]}))
    assert sorted(taken) == sorted(VOLUMES[:5])  # handed to this worker's crawler once
    status = await queue.status()
    assert status.complete
    assert status.done == 4
    assert dict(status.failed) == {VOLUMES[2]: f"500 Internal Server Error (volume {VOLUMES[2]})"}


async def test_failed_volume_retried_by_another_worker(queue: JobQueue) -> None:
    """A volume that failed in one worker is delivered again, and another worker may complete it."""
    await queue.enqueue(["flaky"])
    inner = MemorySink()
    async with Worker(queue, poll=0.1, name="unlucky") as unlucky:
        sink = unlucky.sink(inner)
        volumes = unlucky.volumes()
        assert await anext(volumes) == "flaky"
        await sink.fail("flaky", "timed out")
        async with Worker(JobQueue(queue.client, "nightly"), poll=0.1, name="lucky") as lucky:
            assert await _crawl_all(lucky, lucky.sink(MemorySink())) == ["flaky"]
        assert [volume async for volume in volumes] == []
    status = await queue.status()
    assert (status.done, dict(status.failed)) == (1, {})


async def test_only_a_dead_lettered_volume_is_warned_about(queue: JobQueue) -> None:
    """The first failure requeues quietly (another delivery may succeed); the last one dead-letters the volume
    and says so as a warning naming it, since nothing will crawl it again until `snapcrawl job retry`."""
    await queue.enqueue(["doomed"])
    warned: list[list[str]] = []
    for _ in range(queue.max_deliveries):
        same = JobQueue(queue.client, "nightly", max_deliveries=queue.max_deliveries)
        with capture_logs() as logs:
            async with Worker(same, poll=0.1) as worker:
                sink = worker.sink(MemorySink())
                assert await anext(worker.volumes()) == "doomed"
                await sink.fail("doomed", "timed out")
        warned.append([log["volume_id"] for log in logs if log["event"] == "volume.dead_lettered"])
    assert warned == [[]] * (queue.max_deliveries - 1) + [["doomed"]]
    assert dict((await queue.status()).failed) == {"doomed": "timed out"}


async def test_volumes_done_in_the_output_are_acknowledged_without_crawling(queue: JobQueue) -> None:
    """A volume the shared output already holds as done (its worker died before acknowledging) is not recrawled."""
    await queue.enqueue(VOLUMES[:3])
    inner = MemorySink(progress={VOLUMES[0]: VolumeProgress("done", pages=1)})
    async with Worker(queue, poll=0.1) as worker:
        sink = worker.sink(inner)
        await sink.load_progress()
        taken = await _crawl_all(worker, sink)
    assert sorted(taken) == VOLUMES[1:3]
    assert (await queue.status()).done == 3


async def test_status_lists_live_workers(queue: JobQueue) -> None:
    """Job status names the workers alive, and forgets one that has left."""
    await queue.enqueue(VOLUMES[:1])
    async with Worker(queue, name="host-a:1") as worker:
        assert (await queue.status()).workers == ("host-a:1",)
        assert "host-a:1" in repr(worker)
    assert (await queue.status()).workers == ()


def test_bad_job_names_and_urls(redis_client: aioredis.Redis) -> None:
    """A job name that cannot be a key segment, or a URL that is not Redis, is a ConfigError."""
    for name in ("", "has space", "x" * 300, "*"):
        with pytest.raises(ConfigError, match="invalid job name"):
            JobQueue(redis_client, name)
    with pytest.raises(ConfigError, match="redis://"):
        JobQueue("postgresql://localhost/db", "job")
    with pytest.raises(ConfigError, match="max_deliveries"):
        JobQueue(redis_client, "job", max_deliveries=0)


async def test_unreachable_queue_is_a_transport_error(nowhere: str) -> None:
    """No Redis behind the queue URL: a TransportError saying what the queue was doing."""
    queue = JobQueue(nowhere, "job")
    with pytest.raises(
        TransportError, match=re.escape(f"Redis at {nowhere[8:]} unreachable (job job: create the job)")
    ):
        await queue.enqueue(["a"])
    await queue.aclose()


async def test_worker_needs_the_acking_sink(queue: JobQueue) -> None:
    """Taking volumes without wrapping the sink would never acknowledge them: refused up front."""
    async with Worker(queue) as worker:
        with pytest.raises(ConfigError, match=r"worker\.sink"):
            await anext(worker.volumes())


async def test_finished_job_expires_and_retry_brings_it_back(redis_client: aioredis.Redis) -> None:
    """A finished job's keys expire after keep_finished; retrying its dead letters un-finishes it (no expiry),
    and a worker started on it crawls them, and it finishes again."""
    queue = JobQueue(redis_client, "weekly", max_deliveries=1, keep_finished=300)
    await queue.enqueue(VOLUMES[:4])
    async with Worker(queue, poll=0.1) as worker:
        await _crawl_all(worker, worker.sink(MemorySink()), fail=frozenset({VOLUMES[1]}))
    status = await queue.status()
    assert status.state == "finished"
    assert status.expires_in is not None
    assert 290 <= status.expires_in <= 300
    for key in queue.keys.all():
        assert await redis_client.ttl(key) in (-2, *range(290, 301)), key  # every key that exists expires
    assert await queue.retry() == [VOLUMES[1]]
    assert await redis_client.ttl(queue.keys.volumes) == -1
    status = await queue.status()
    assert (status.state, status.pending, dict(status.failed)) == ("abandoned", 1, {})
    async with Worker(queue, poll=0.1) as worker:
        assert await _crawl_all(worker, worker.sink(MemorySink())) == [VOLUMES[1]]
    status = await queue.status()
    assert (status.state, status.done, status.expires_in is not None) == ("finished", 4, True)


async def test_unfinished_job_never_expires(queue: JobQueue, redis_client: aioredis.Redis) -> None:
    """A job with volumes left keeps its keys (abandoned, it waits for a worker or job delete)."""
    await queue.enqueue(VOLUMES[:2])
    assert not await queue.finish()
    assert await redis_client.ttl(queue.keys.volumes) == -1


@pytest.mark.parametrize("most", [1, 3])
async def test_max_deliveries_is_the_dead_letter_count(redis_client: aioredis.Redis, most: int) -> None:
    """A volume that fails in every worker is crawled max_deliveries times, then dead-lettered with its error."""
    queue = JobQueue(redis_client, f"stubborn{most}", max_deliveries=most)
    await queue.enqueue(["bad"])
    crawls, decisions = 0, []
    for n in range(most + 2):
        reply: Any = await redis_client.xreadgroup(GROUP, f"worker{n}", {queue.keys.stream: ">"}, count=1)
        if not reply:
            break
        entry_id, _ = reply[0][1][0]
        decision = (await queue.take([(entry_id.decode(), "bad")], set()))[0]
        decisions.append(decision)
        if decision == "crawl":
            crawls += 1
            decisions.append(await queue.fail(entry_id.decode(), "bad", "500"))
    assert crawls == most
    assert decisions == ["crawl", "requeued"] * (most - 1) + ["crawl", "dead"]
    assert dict((await queue.status()).failed) == {"bad": "500"}
