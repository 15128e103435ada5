"""A distributed crawl's state in Redis: the job's keys, idempotent enqueuing, acknowledgements and status.

One job is a set of keys under ``snapcrawl:job:NAME:`` (see :class:`JobKeys`). Volume ids go into a Stream
once each (a set remembers every id ever enqueued, so every worker may enqueue the same list); workers read it
through the consumer group ``workers``. Every state change is one Lua script, so it is atomic in Redis.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import ConfigError, TransportError
from .._redis_url import check_redis_client

__all__ = ["DEFAULT_MAX_DELIVERIES", "GROUP", "JobKeys", "JobQueue", "JobStatus", "Take"]

GROUP: Final = "workers"
DEFAULT_MAX_DELIVERIES: Final = 3
#: A worker is alive while its last heartbeat is at most this old (seconds).
WORKER_ALIVE_SECONDS: Final = 15.0
_JOB_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_ENQUEUE_BATCH: Final = 500

Take = Literal["crawl", "skip", "dead", "requeued"]

# KEYS: volumes, stream. ARGV: volume ids. Adds each id never enqueued before; returns how many.
_ENQUEUE: Final = """
local added = 0
for _, volume in ipairs(ARGV) do
  if redis.call('SADD', KEYS[1], volume) == 1 then
    redis.call('XADD', KEYS[2], '*', 'v', volume)
    added = added + 1
  end
end
return added
"""

# KEYS: attempts, done, failed, errors, stream. ARGV: group, max deliveries, then (entry id, volume, seen) triples.
# Counts a delivery of each entry and decides: crawl it; skip it (finished already); dead-letter it (delivered
# too often); or requeue it (this worker has had it before and cannot crawl it again: let another try).
_TAKE: Final = """
local group, most = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 3 do
  local id, volume, seen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SISMEMBER', KEYS[2], volume) == 1 or redis.call('HEXISTS', KEYS[3], volume) == 1 then
    redis.call('XACK', KEYS[5], group, id)
    out[#out + 1] = 'skip'
  else
    local n = redis.call('HINCRBY', KEYS[1], volume, 1)
    if n > most then
      local err = redis.call('HGET', KEYS[4], volume) or ('not completed in ' .. most .. ' deliveries')
      redis.call('HSET', KEYS[3], volume, err)
      redis.call('XACK', KEYS[5], group, id)
      out[#out + 1] = 'dead'
    elseif seen == '1' then
      redis.call('XACK', KEYS[5], group, id)
      redis.call('XADD', KEYS[5], '*', 'v', volume)
      out[#out + 1] = 'requeued'
    else
      out[#out + 1] = 'crawl'
    end
  end
end
return out
"""

# KEYS: stream, done. ARGV: group, then (entry id, volume) pairs. The volumes' snapshots are committed.
_ACK: Final = """
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('SADD', KEYS[2], ARGV[i + 1])
end
return #ARGV / 2
"""

# KEYS: attempts, errors, failed, stream, done. ARGV: group, max deliveries, entry id, volume, error.
# A crawl of the volume failed: requeue it for another delivery, or dead-letter it once it has had enough.
_FAIL: Final = """
local group, most, id, volume, err = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
redis.call('XACK', KEYS[4], group, id)
if redis.call('SISMEMBER', KEYS[5], volume) == 1 then return 'skip' end
redis.call('HSET', KEYS[2], volume, err)
if tonumber(redis.call('HGET', KEYS[1], volume) or '0') >= most then
  redis.call('HSET', KEYS[3], volume, err)
  return 'dead'
end
redis.call('XADD', KEYS[4], '*', 'v', volume)
return 'requeued'
"""

# KEYS: workers, stream. ARGV: group, worker, alive seconds, then entry ids it holds. A worker's heartbeat:
# it is alive, and the entries it holds are still being worked on (their idle time starts again, so that no
# other worker claims them; JUSTID leaves their delivery count alone).
_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]) * 4)
if #ARGV > 3 then
  redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, unpack(ARGV, 4, #ARGV))
end
return tostring(now)
"""


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

    @classmethod
    def for_job(cls, job: str, *, prefix: str = "snapcrawl:job") -> JobKeys:
        base = f"{prefix}:{job}"
        return cls(
            stream=f"{base}:stream",
            volumes=f"{base}:volumes",
            done=f"{base}:done",
            failed=f"{base}:failed",
            errors=f"{base}:errors",
            attempts=f"{base}:attempts",
            workers=f"{base}:workers",
            sealed=f"{base}:sealed",
        )


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job stands: volumes waiting, being crawled, done and failed (dead-lettered), and live workers."""

    job: str
    total: int
    pending: int
    in_progress: int
    done: int
    failed: Mapping[str, str]
    workers: tuple[str, ...]
    sealed: bool

    @property
    def complete(self) -> bool:
        """Every volume of the job is done or failed, and its list has been enqueued in full."""
        return self.sealed and self.done + len(self.failed) >= self.total

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "total": self.total,
            "pending": self.pending,
            "in_progress": self.in_progress,
            "done": self.done,
            "failed": dict(self.failed),
            "workers": list(self.workers),
            "complete": self.complete,
        }


def queue_client(url: str) -> aioredis.Redis:
    """A client for the job queue: a few quick retries over a blip, then an error (the queue cannot fail open)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--queue takes a redis:// URL, not {url.split(':', 1)[0]!r}")
    try:
        return check_redis_client(
            aioredis.Redis.from_url(
                url,
                socket_timeout=10.0,
                socket_connect_timeout=5.0,
                retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 4),
            )
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL: {exc}") from None


def check_job_name(job: str) -> str:
    if not _JOB_NAME.fullmatch(job):
        raise ConfigError(
            f"invalid job name {str(job)[:40]!r}: 1-200 letters, digits and . _ : -, starting with a letter or digit"
        )
    return job


class JobQueue:
    """One job's queue in Redis: enqueue volume ids (idempotently), acknowledge, fail, and report status.

    ``max_deliveries`` is how many times a volume is handed out before it is dead-lettered as failed.
    Redis errors become :class:`~snapcrawl.TransportError`.
    """

    def __init__(
        self,
        client: aioredis.Redis | str,
        job: str,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        prefix: str = "snapcrawl:job",
    ) -> None:
        if max_deliveries < 1:
            raise ConfigError(f"max_deliveries must be >= 1, not {max_deliveries}")
        self.job = check_job_name(job)
        self._owns_client = isinstance(client, str)
        self.client = queue_client(client) if isinstance(client, str) else client
        self.keys = JobKeys.for_job(job, prefix=prefix)
        self.max_deliveries = max_deliveries
        self._enqueue = self.client.register_script(_ENQUEUE)
        self._take = self.client.register_script(_TAKE)
        self._ack = self.client.register_script(_ACK)
        self._fail = self.client.register_script(_FAIL)
        self.heartbeat_script = self.client.register_script(_HEARTBEAT)

    def __repr__(self) -> str:
        return f"JobQueue(job={self.job!r}, max_deliveries={self.max_deliveries})"

    async def aclose(self) -> None:
        """Close the client, if the queue made it."""
        if self._owns_client:
            await self.client.aclose()

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group, unless they exist."""
        try:
            await self.client.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, volume_ids: Iterable[str] | AsyncIterable[str]) -> int:
        """Add the ids never enqueued in this job before; then mark the job's list complete. Returns how many.

        Every worker may call it with the same ids: each is enqueued once, and a worker that dies half-way
        through is completed by the next.
        """
        added = 0
        batch: list[str] = []
        async with _mapped("enqueue"):
            await self.ensure_group()
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
        async with _mapped("take volumes"):
            reply = await self._take(keys=[keys.attempts, keys.done, keys.failed, keys.errors, keys.stream], args=args)
        return [_text(decision) for decision in reply]  # type: ignore[misc]

    async def ack(self, entries: list[tuple[str, str]]) -> None:
        """Mark ``(entry id, volume)`` pairs done: their snapshots are committed to the output."""
        if not entries:
            return
        args = [GROUP]
        for entry_id, volume in entries:
            args += [entry_id, volume]
        async with _mapped("acknowledge volumes"):
            await self._ack(keys=[self.keys.stream, self.keys.done], args=args)

    async def fail(self, entry_id: str, volume: str, error: str) -> Take:
        """A crawl of ``volume`` failed: requeue it, or dead-letter it after ``max_deliveries``."""
        keys = self.keys
        async with _mapped("report a failed volume"):
            reply = await self._fail(
                keys=[keys.attempts, keys.errors, keys.failed, keys.stream, keys.done],
                args=[GROUP, str(self.max_deliveries), entry_id, volume, error[:2000]],
            )
        return _text(reply)  # type: ignore[return-value]

    async def status(self) -> JobStatus:
        """Where the job stands now."""
        keys = self.keys
        async with _mapped("read the job status"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.scard(keys.volumes)
                pipe.scard(keys.done)
                pipe.hgetall(keys.failed)
                pipe.exists(keys.sealed)
                pipe.time()
                replies: list[Any] = await pipe.execute()
            total, done, failed, sealed, (seconds, micros) = replies
            now = seconds + micros / 1e6
            workers: Any = await self.client.zrangebyscore(keys.workers, now - WORKER_ALIVE_SECONDS, "+inf")
            try:
                in_progress = (await self.client.xpending(keys.stream, GROUP))["pending"]
            except ResponseError:  # no group yet: nothing handed out
                in_progress = 0
        failed_map = {_text(volume): _text(error) for volume, error in failed.items()}
        in_progress = min(in_progress, max(total - done - len(failed_map), 0))
        return JobStatus(
            job=self.job,
            total=total,
            pending=max(total - done - len(failed_map) - in_progress, 0),
            in_progress=in_progress,
            done=done,
            failed=failed_map,
            workers=tuple(_text(worker) for worker in workers),
            sealed=bool(sealed),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _aiter(values: Iterable[str] | AsyncIterable[str]) -> Any:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield value
    else:
        for value in values:
            yield value


class _mapped:  # noqa: N801 - used like a function: ``async with _mapped("what")``
    """Turn Redis failures into :class:`TransportError` naming what the queue was doing."""

    def __init__(self, doing: str) -> None:
        self._doing = doing

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            raise TransportError(f"job queue unreachable ({self._doing}): {type(exc).__name__}") from exc
        if isinstance(exc, RedisError):
            raise TransportError(f"job queue failed ({self._doing}): {exc}") from exc
