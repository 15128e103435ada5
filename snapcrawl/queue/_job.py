"""A distributed crawl's state in Redis: the job's keys, idempotent enqueuing, acknowledgements, status, lifecycle.

One job is a set of keys under ``snapcrawl:job:NAME:`` (see :class:`JobKeys`). Volume ids go into a Stream
once each (a set remembers every id ever enqueued, so every worker may enqueue the same list); workers read it
through the consumer group ``workers``. Every state change is one Lua script (``snapcrawl/_redis/*.lua``), so
it is atomic in Redis.

Lifecycle: a job is *running* while a worker is alive, *abandoned* when volumes are left and no worker is alive
(it stays, for a worker to resume it or for ``job delete``), and *finished* when its list is complete and every
volume is done or dead-lettered: its keys then expire after ``keep_finished`` seconds (default a week).
``retry`` puts dead-lettered volumes back in the queue, and the job is running again once a worker joins.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from .. import _redis
from .._exceptions import ConfigError

__all__ = [
    "DEFAULT_KEEP_FINISHED",
    "DEFAULT_MAX_DELIVERIES",
    "GROUP",
    "JobKeys",
    "JobQueue",
    "JobState",
    "JobStatus",
    "Take",
    "list_jobs",
]

GROUP: Final = "workers"
DEFAULT_MAX_DELIVERIES: Final = 3
#: A finished job's keys expire after this many seconds (a week), unless told otherwise.
DEFAULT_KEEP_FINISHED: Final = 7 * 86_400
#: A worker is alive while its last heartbeat is at most this old (seconds).
WORKER_ALIVE_SECONDS: Final = 15.0
#: How long a dead worker stays in the job's registry, so that ``job status`` can say when it was last seen.
WORKER_KEEP_SECONDS: Final = 7 * 86_400
_JOB_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_ENQUEUE_BATCH: Final = 500

Take = Literal["crawl", "skip", "dead", "requeued"]
JobState = Literal["running", "waiting", "abandoned", "finished"]


@dataclasses.dataclass(frozen=True, slots=True)
class JobKeys:
    """The Redis keys of one job (all under ``snapcrawl:job:NAME:``)."""

    stream: str
    volumes: str
    done: str
    failed: str
    errors: str
    attempts: str
    workers: str
    sealed: str
    finished: str

    @classmethod
    def for_job(cls, job: str, *, prefix: str = _redis.JOB_PREFIX) -> JobKeys:
        base = f"{prefix}:{job}"
        return cls(**{field.name: f"{base}:{field.name}" for field in dataclasses.fields(cls)})

    def all(self) -> list[str]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job stands: volumes waiting, being crawled, done and failed (dead-lettered), and live workers.

    ``last_seen`` is how many seconds ago a worker last sent a heartbeat (``None``: none ever joined);
    ``expires_in`` the seconds until a finished job's keys expire.
    """

    job: str
    total: int
    pending: int
    in_progress: int
    done: int
    failed: Mapping[str, str]
    workers: tuple[str, ...]
    sealed: bool
    last_seen: float | None = None
    expires_in: int | None = None

    @property
    def complete(self) -> bool:
        """Every volume of the job is done or failed, and its list has been enqueued in full."""
        return self.sealed and self.done + len(self.failed) >= self.total

    @property
    def state(self) -> JobState:
        """finished; running (a worker alive); waiting (no worker ever joined); or abandoned (none alive now)."""
        if self.complete:
            return "finished"
        if self.workers:
            return "running"
        return "waiting" if self.last_seen is None else "abandoned"

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "state": self.state,
            "total": self.total,
            "pending": self.pending,
            "in_progress": self.in_progress,
            "done": self.done,
            "failed": dict(self.failed),
            "workers": list(self.workers),
            "last_seen": None if self.last_seen is None else round(self.last_seen, 1),
            "complete": self.complete,
            "expires_in": self.expires_in,
        }


def check_job_name(job: str) -> str:
    if not _JOB_NAME.fullmatch(job):
        raise ConfigError(
            f"invalid job name {str(job)[:40]!r}: 1-200 letters, digits and . _ : -, starting with a letter or digit"
        )
    return job


class JobQueue:
    """One job's queue in Redis: enqueue volume ids (idempotently), acknowledge, fail, report status, and manage
    the job's life (finish, retry, delete).

    ``max_deliveries`` is how many times a volume is handed out before it is dead-lettered as failed;
    ``keep_finished`` how many seconds a finished job's keys are kept. ``client`` is a URL (``env:NAME`` reads
    it from the environment; the password may come from ``REDISCLI_AUTH``) or a client. Redis errors become
    :class:`~snapcrawl.TransportError` (unreachable) or :class:`~snapcrawl.ConfigError` (Redis refuses: wrong
    password, read-only replica, out of memory). ``option`` names the URL's setting in messages.
    """

    def __init__(
        self,
        client: aioredis.Redis | str,
        job: str,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        keep_finished: int = DEFAULT_KEEP_FINISHED,
        prefix: str = _redis.JOB_PREFIX,
        option: str = "queue",
    ) -> None:
        if max_deliveries < 1:
            raise ConfigError(f"max_deliveries must be >= 1, not {max_deliveries}")
        if keep_finished < 1:
            raise ConfigError(f"keep_finished must be >= 1 second, not {keep_finished}")
        self.job = check_job_name(job)
        self._owns_client = isinstance(client, str)
        self.client = _redis.client(client, role="queue", option=option) if isinstance(client, str) else client
        self.server = _redis.server_of(self.client)
        self.keys = JobKeys.for_job(job, prefix=prefix)
        self.max_deliveries = max_deliveries
        self.keep_finished = keep_finished
        self._enqueue = _redis.script(self.client, "enqueue.lua")
        self._take = _redis.script(self.client, "take.lua")
        self._ack = _redis.script(self.client, "ack.lua")
        self._fail = _redis.script(self.client, "fail.lua")
        self._finish = _redis.script(self.client, "finish.lua")
        self._retry = _redis.script(self.client, "retry.lua")
        self.heartbeat_script = _redis.script(self.client, "worker.lua", registry=True)

    def __repr__(self) -> str:
        return f"JobQueue(job={self.job!r}, max_deliveries={self.max_deliveries})"

    async def aclose(self) -> None:
        """Close the client, if the queue made it."""
        if self._owns_client:
            await self.client.aclose()

    def mapped(self, doing: str) -> _Mapped:
        """``async with queue.mapped("what")``: Redis failures become snapcrawl errors naming the server and what."""
        return _Mapped(self.server, f"job {self.job}: {doing}")

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group, unless they exist."""
        async with self.mapped("create the job"):
            try:
                await self.client.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def exists(self) -> bool:
        """Whether Redis holds this job (it may have expired, been deleted, or never been enqueued)."""
        keys = self.keys
        async with self.mapped("look the job up"):
            return bool(await self.client.exists(keys.stream, keys.volumes, keys.sealed))

    async def require(self) -> None:
        """Raise :class:`ConfigError` naming the job if Redis does not hold it."""
        if not await self.exists():
            raise ConfigError(f"no job {self.job!r} in Redis at {self.server} (finished jobs expire; see job list)")

    async def enqueue(self, volume_ids: Iterable[str] | AsyncIterable[str]) -> int:
        """Add the ids never enqueued in this job before; then mark the job's list complete. Returns how many.

        Every worker may call it with the same ids: each is enqueued once, and a worker that dies half-way
        through is completed by the next.
        """
        added = 0
        batch: list[str] = []
        await self.ensure_group()
        async with self.mapped("enqueue"):
            async for volume_id in _aiter(volume_ids):
                batch.append(volume_id)
                if len(batch) >= _ENQUEUE_BATCH:
                    added += await self._enqueue(keys=[self.keys.volumes, self.keys.stream], args=batch)
                    batch = []
            if batch:
                added += await self._enqueue(keys=[self.keys.volumes, self.keys.stream], args=batch)
            await self.client.set(self.keys.sealed, "1")
        return added

    async def take(self, entries: list[tuple[str, str]], seen: set[str]) -> list[Take]:
        """Count one delivery of each ``(entry id, volume)`` and decide what becomes of it."""
        if not entries:
            return []
        args: list[str] = [GROUP, str(self.max_deliveries)]
        for entry_id, volume in entries:
            args += [entry_id, volume, "1" if volume in seen else "0"]
        keys = self.keys
        async with self.mapped("take volumes"):
            reply = await self._take(keys=[keys.attempts, keys.done, keys.failed, keys.errors, keys.stream], args=args)
        return [_redis.text(decision) for decision in reply]  # type: ignore[misc]

    async def ack(self, entries: list[tuple[str, str]]) -> None:
        """Mark ``(entry id, volume)`` pairs done: their snapshots are committed to the output."""
        if not entries:
            return
        args = [GROUP]
        for entry_id, volume in entries:
            args += [entry_id, volume]
        async with self.mapped("acknowledge volumes"):
            await self._ack(keys=[self.keys.stream, self.keys.done], args=args)

    async def fail(self, entry_id: str, volume: str, error: str) -> Take:
        """A crawl of ``volume`` failed: requeue it, or dead-letter it after ``max_deliveries``."""
        keys = self.keys
        async with self.mapped("report a failed volume"):
            reply = await self._fail(
                keys=[keys.attempts, keys.errors, keys.failed, keys.stream, keys.done],
                args=[GROUP, str(self.max_deliveries), entry_id, volume, error[:2000]],
            )
        return _redis.text(reply)  # type: ignore[return-value]

    async def finish(self) -> bool:
        """If the job is finished, let its keys expire after ``keep_finished`` seconds; whether it is."""
        keys = self.keys
        first = [keys.volumes, keys.done, keys.failed, keys.sealed, keys.finished]
        others = [key for key in keys.all() if key not in first]
        async with self.mapped("finish"):
            return bool(await self._finish(keys=first + others, args=[self.keep_finished]))

    async def retry(self, volumes: Iterable[str] = ()) -> list[str]:
        """Requeue dead-lettered ``volumes`` (default: all of them), each with fresh deliveries; the ones requeued.

        The job is no longer finished: its keys no longer expire, and a worker started on it crawls them.
        """
        keys = self.keys
        first = [keys.failed, keys.attempts, keys.stream, keys.finished]
        others = [key for key in keys.all() if key not in first]
        await self.ensure_group()
        async with self.mapped("requeue dead-lettered volumes"):
            reply: Any = await self._retry(keys=first + others, args=list(volumes))
        return [_redis.text(volume) for volume in reply]

    async def delete(self) -> int:
        """Delete every key of the job; how many there were."""
        async with self.mapped("delete"):
            deleted: int = await self.client.delete(*self.keys.all())
        return deleted

    async def status(self) -> JobStatus:
        """Where the job stands now."""
        keys = self.keys
        async with self.mapped("read the job status"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.scard(keys.volumes)
                pipe.scard(keys.done)
                pipe.hgetall(keys.failed)
                pipe.exists(keys.sealed)
                pipe.time()
                pipe.zrevrange(keys.workers, 0, 0, withscores=True)
                pipe.ttl(keys.volumes)
                replies: list[Any] = await pipe.execute()
            total, done, failed, sealed, (seconds, micros), last, ttl = replies
            now = seconds + micros / 1e6
            workers: Any = await self.client.zrangebyscore(keys.workers, now - WORKER_ALIVE_SECONDS, "+inf")
            try:
                in_progress = (await self.client.xpending(keys.stream, GROUP))["pending"]
            except ResponseError:  # no group yet: nothing handed out
                in_progress = 0
        failed_map = {_redis.text(volume): _redis.text(error) for volume, error in failed.items()}
        in_progress = min(in_progress, max(total - done - len(failed_map), 0))
        return JobStatus(
            job=self.job,
            total=total,
            pending=max(total - done - len(failed_map) - in_progress, 0),
            in_progress=in_progress,
            done=done,
            failed=failed_map,
            workers=tuple(_redis.text(worker) for worker in workers),
            sealed=bool(sealed),
            last_seen=max(now - last[0][1], 0.0) if last else None,
            expires_in=ttl if ttl >= 0 else None,
        )


async def list_jobs(client: aioredis.Redis, *, prefix: str = _redis.JOB_PREFIX) -> list[str]:
    """The names of the jobs Redis holds (found by their stream's key), sorted."""
    head, tail = f"{prefix}:", ":stream"
    names = set()
    async with _Mapped(_redis.server_of(client), "list jobs"):
        async for key in client.scan_iter(match=f"{prefix}:*{tail}", count=1000):
            name = _redis.text(key)[len(head) : -len(tail)]
            if _JOB_NAME.fullmatch(name):
                names.add(name)
    return sorted(names)


async def _aiter(values: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield value
    else:
        for value in values:
            yield value


class _Mapped:
    """Turn Redis failures into snapcrawl errors (:func:`snapcrawl._redis.as_error`) naming what was being done."""

    def __init__(self, server: str, doing: str) -> None:
        self._server = server
        self._doing = doing

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, RedisError | OSError):
            raise _redis.as_error(exc, server=self._server, doing=self._doing) from exc
