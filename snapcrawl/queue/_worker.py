"""One worker of a distributed crawl: takes volumes from the job's stream, acknowledges them once committed.

The worker hands the crawler an async iterator of volume ids (:meth:`Worker.volumes`) and wraps the crawl's
sink (:meth:`Worker.sink`): a volume is acknowledged only once the sink's ``on_commit`` says its last page is
durably committed, and a failed volume goes back to the queue (or to the dead letters). Volumes that a dead
worker left pending longer than ``claim_after`` are claimed (``XAUTOCLAIM``); a background heartbeat keeps
the volumes this worker holds from being claimed while it is alive. The iterator ends when every volume of
the job is done or failed, so a worker stays until the job is complete, ready to take over what another
worker leaves behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import TaskGroup

from .. import _redis
from .._exceptions import ConfigError
from .._log import get_logger
from .._models import Page
from ..sinks import CommitListener, Sink, VolumeProgress
from ._job import GROUP, WORKER_ALIVE_SECONDS, WORKER_KEEP_SECONDS, JobQueue

__all__ = ["DEFAULT_CLAIM_AFTER", "AckingSink", "Worker"]

DEFAULT_CLAIM_AFTER: Final = 60.0

_log = get_logger("queue")


class Worker:
    """Crawls a share of a job: ``async with Worker(queue) as worker``, then
    ``crawler.crawl_into(worker.volumes(), worker.sink(sink))``.

    ``claim_after`` (seconds) is how long a volume may stay unacknowledged in a worker that stopped sending
    heartbeats before another claims it. ``batch`` is how many volumes are read from the stream at once;
    ``ack_every`` how many finished volumes make the worker flush the sink so that it can acknowledge them.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        claim_after: float = DEFAULT_CLAIM_AFTER,
        batch: int = 16,
        ack_every: int = 16,
        poll: float = 1.0,
        name: str | None = None,
    ) -> None:
        if not (claim_after > 0 and math.isfinite(claim_after)):
            raise ConfigError(f"claim_after must be a finite number of seconds > 0, not {claim_after}")
        if batch < 1 or ack_every < 1:
            raise ConfigError("batch and ack_every must be >= 1")
        self.queue = queue
        self.claim_after = claim_after
        self.batch = batch
        self.ack_every = ack_every
        self.poll = min(poll, claim_after / 2)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._heartbeat = _redis.Heartbeat(self._beat, min(claim_after / 3, WORKER_ALIVE_SECONDS / 3))
        self._held: dict[str, str] = {}  # volume -> stream entry id, handed to the crawler, not yet acknowledged
        self._seen: set[str] = set()  # volumes handed to this worker's crawler (it crawls an id once)
        self._done_before: set[str] = set()  # done in the output already, by the sink's own progress
        self._sink: AckingSink | None = None
        self._claim_cursor = "0-0"
        self._task_group: TaskGroup | None = None
        self.taken = 0
        self.claimed = 0

    def __repr__(self) -> str:
        return f"Worker(job={self.queue.job!r}, name={self.name!r}, claim_after={self.claim_after})"

    async def __aenter__(self) -> Self:
        await self.queue.ensure_group()
        await self._heartbeat_once()
        self._task_group = await anyio.create_task_group().__aenter__()
        self._task_group.start_soon(self._heartbeat.run)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(exc_type, exc, tb)
            self._task_group = None
        # No longer alive, but seen now (so job status can tell a finished worker from none ever). A courtesy: the
        # entry ages out of "alive" anyway.
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0), contextlib.suppress(Exception):
            seconds, micros = await self.queue.client.time()
            gone = seconds + micros / 1e6 - WORKER_ALIVE_SECONDS - 1
            await self.queue.client.zadd(self.queue.keys.workers, {self.name: gone})

    def sink(self, inner: Sink) -> Sink:
        """Wrap the crawl's sink: acknowledge volumes once committed, requeue the failed ones."""
        self._sink = AckingSink(inner, self)
        return self._sink

    async def volumes(self) -> AsyncIterator[str]:
        """The volumes this worker should crawl, until the job is complete."""
        if self._sink is None:
            raise ConfigError("wrap the crawl's sink with worker.sink(...) first: volumes are acknowledged by it")
        while True:
            entries = await self._claim() or await self._read()
            if entries:
                decisions = await self.queue.take(entries, self._seen)
                for (entry_id, volume), decision in zip(entries, decisions, strict=True):
                    if decision == "dead":
                        _log.warning("volume.dead_lettered", job=self.queue.job, volume_id=volume)
                    if decision != "crawl":
                        continue
                    self.taken += 1
                    if volume in self._done_before:  # committed by an earlier run: nothing to crawl again
                        await self.queue.ack([(entry_id, volume)])
                        continue
                    self._held[volume] = entry_id
                    self._seen.add(volume)
                    yield volume
                continue
            # Nothing to take: commit what is finished (its acknowledgement may be all the job waits for).
            await self._sink.flush()
            if (await self.queue.status()).complete:
                await self.queue.finish()  # its keys expire after the queue's keep_finished
                return

    async def _read(self) -> list[tuple[str, str]]:
        """New entries of the stream, waiting up to ``poll`` seconds for some."""
        async with self.queue.mapped("read the stream"):
            reply: Any = await self.queue.client.xreadgroup(
                GROUP, self.name, {self.queue.keys.stream: ">"}, count=self.batch, block=int(self.poll * 1000)
            )
        text = _redis.text
        return [(text(entry_id), _volume(fields)) for _, messages in reply or () for entry_id, fields in messages]

    async def _claim(self) -> list[tuple[str, str]]:
        """Entries another worker has left unacknowledged for longer than ``claim_after``."""
        async with self.queue.mapped("claim stale volumes"):
            cursor, messages, *_ = await self.queue.client.xautoclaim(
                self.queue.keys.stream,
                GROUP,
                self.name,
                min_idle_time=int(self.claim_after * 1000),
                start_id=self._claim_cursor,
                count=self.batch,
            )
        self._claim_cursor = _redis.text(cursor)
        entries = [(_redis.text(entry_id), _volume(fields)) for entry_id, fields in messages if fields]
        if entries:
            self.claimed += len(entries)
            _log.info("volumes.claimed", job=self.queue.job, count=len(entries))
        return entries

    async def acknowledge(self, volumes: list[str]) -> None:
        """The snapshots of ``volumes`` are committed: take them off the queue as done."""
        entries = [(self._held.pop(volume), volume) for volume in volumes if volume in self._held]
        await self.queue.ack(entries)

    async def failed(self, volume: str, error: str) -> None:
        """The crawler gave up on ``volume``: requeue it for another delivery, or dead-letter it."""
        entry_id = self._held.pop(volume, None)
        if entry_id is None:
            return
        outcome = await self.queue.fail(entry_id, volume, error)
        if outcome == "dead":
            _log.warning("volume.dead_lettered", job=self.queue.job, volume_id=volume, error=error)

    async def _heartbeat_once(self) -> None:
        """This worker is alive, and the volumes it holds are its own (no other worker claims them)."""
        queue = self.queue
        async with queue.mapped("heartbeat"):
            await queue.heartbeat_script(
                keys=[queue.keys.workers, queue.keys.stream],
                args=[GROUP, self.name, WORKER_ALIVE_SECONDS, WORKER_KEEP_SECONDS, *self._held.values()],
            )

    async def _beat(self) -> None:
        try:
            await self._heartbeat_once()
        except Exception as exc:  # a missed beat is not fatal: the next read tells
            _log.warning("worker.heartbeat_failed", job=self.queue.job, error=str(exc))


def _volume(fields: Mapping[bytes | str, bytes | str]) -> str:
    value = fields.get(b"v", fields.get("v"))
    if value is None:
        raise ConfigError("a job stream entry without a volume id: is this key a snapcrawl job?")
    return _redis.text(value)


class AckingSink:
    """A sink that forwards everything, and acknowledges a volume once the inner sink has durably committed it.

    It listens on the inner sink's ``on_commit`` (and passes the notification on to its own ``on_commit``, if
    set). A failed volume goes back to the queue at once (its failure is not output to commit).
    """

    def __init__(self, inner: Sink, worker: Worker) -> None:
        self._inner = inner
        self._worker = worker
        self.resumable = inner.resumable
        self._finished = 0  # volumes whose last page was written since the last flush
        self.on_commit: CommitListener | None = None
        inner.on_commit = self._committed

    @property
    def inner(self) -> Sink:
        """The sink it wraps (``Crawler.crawl_into`` binds a database sink's account through it)."""
        return self._inner

    async def _committed(self, volume_ids: Sequence[str | None]) -> None:
        await self._worker.acknowledge([volume for volume in volume_ids if volume is not None])
        if self.on_commit is not None:
            await self.on_commit(volume_ids)

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        progress = await self._inner.load_progress()
        self._worker._done_before = {v for v, p in progress.items() if v is not None and p.status == "done"}
        return progress

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return await self._inner.delivered_ids(volume_id)

    async def write(self, page: Page) -> None:
        await self._inner.write(page)
        if page.last and page.volume_id is not None:
            self._finished += 1
            if self._finished >= self._worker.ack_every:
                await self.flush()

    async def fail(self, volume_id: str | None, error: str) -> None:
        if volume_id is not None:
            await self._worker.failed(volume_id, error)
        await self._inner.fail(volume_id, error)

    async def flush(self) -> None:
        """Commit: the volumes finished so far are acknowledged (through ``on_commit``)."""
        self._finished = 0
        await self._inner.flush()

    async def complete(self) -> None:
        await self._inner.complete()

    async def aclose(self) -> None:
        await self._inner.aclose()
