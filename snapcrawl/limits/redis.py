"""One quota shared by every process through Redis: a GCRA token bucket and an adaptive rate, on Redis's clock.

Every process that uses the same Redis, endpoint and access key calls one Lua script (``EVALSHA``, reloaded on
``NOSCRIPT``) once per request. The script keeps, in one hash:

- the bucket in GCRA form (as the ``limits`` library's ``acquire_gcra.lua``): the theoretical arrival time
  ``tat``; a request may go at ``tat - tolerance``, ``tolerance = (burst - 1) * interval``, and pushes ``tat``
  one emission interval further. A caller *reserves* its slot and sleeps until it, so one round trip suffices;
- the adaptive rate: botocore's CUBIC curve ``C * (t - K)**3 + W_max`` evaluated at Redis ``TIME``, so a
  throttle seen by any process cuts the rate of all of them, once per congestion event; the rate of grants of
  all processes together is measured there too (half-second buckets), which is what a throttle cuts from;
- the pause a ``Retry-After`` asked for, and an ``epoch`` that a cut increments: reservations made before a cut
  are void, and their holders queue again at the new rate (their one extra round trip).

Throttle feedback rides on the next call of the process (usually its next request), or on a background call
made at once if none comes first. A background task also keeps a heartbeat set of the processes using the
bucket. When Redis is unreachable or fails, the limiter fails open to a local limiter holding a conservative
share of the last known rate (divided by the number of processes seen alive), warns once, and reconnects in
the background; ``stats`` counts what happened (as Envoy's global rate limit does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

import anyio
import redis.asyncio as aioredis
import structlog
from anyio.abc import TaskGroup
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import ConfigError
from .._ratelimit import AdaptiveRateLimiter, Clock, Sleep

__all__ = ["DEFAULT_KEY_PREFIX", "RedisLimiter", "RedisLimiterStats", "quota_key", "redis_client"]

DEFAULT_KEY_PREFIX: Final = "snapcrawl:quota"

_log = structlog.get_logger("snapcrawl")

# KEYS: the bucket hash, the heartbeat set of processes.
# ARGV: cap (requests/s, 0 = none), burst, throttled_at (Redis time of the throttled request's grant, 0 = none),
#       retry_after (s, 0 = none), grant (1 reserve a slot, 0 report only), returned (slots given back),
#       returned_epoch, process id ('' = no heartbeat), alive_seconds, ttl_seconds.
# Reply: wait (s), rate (0 = none), epoch, now, processes alive (-1 = not asked). Floats as strings: Lua numbers
# turn into Redis integers otherwise.
_SCRIPT: Final = """
local key, procs = KEYS[1], KEYS[2]
local cap, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local throttled_at, retry_after = tonumber(ARGV[3]), tonumber(ARGV[4])
local grant, returned, returned_epoch = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local proc, alive, ttl = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local SCALE, BETA, MIN_RATE, GROWTH = 0.4, 0.7, 0.5, 2.0

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'adapt', 'wmax', 'lcut', 'pause', 'mb', 'mc', 'ms', 'epoch', 'mstart')
local tat, adapt, wmax = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local lcut, pause, mb = tonumber(s[4]) or 0, tonumber(s[5]) or 0, tonumber(s[6]) or 0
local mc, ms, epoch, mstart = tonumber(s[7]) or 0, tonumber(s[8]) or 0, tonumber(s[9]) or 0, tonumber(s[10]) or 0

local function measured()
  if ms > 0 then return ms end
  if mc == 0 then return 0 end
  return mc / math.max(now - mstart, 0.05)
end

local function current_rate()
  if adapt == 1 then
    local k = ((wmax * (1 - BETA)) / SCALE) ^ (1 / 3)
    local rate = SCALE * (now - lcut - k) ^ 3 + wmax
    rate = math.max(MIN_RATE, math.min(rate, GROWTH * math.max(measured(), MIN_RATE)))
    if cap > 0 then rate = math.min(rate, cap) end
    return rate
  end
  if cap > 0 then return cap end
  return 0
end

local rate = current_rate()
if returned > 0 and returned_epoch == epoch and rate > 0 and tat > now then
  tat = math.max(now, tat - returned / rate)
end
if retry_after > 0 then pause = math.max(pause, now + retry_after) end
if throttled_at > 0 and not (adapt == 1 and throttled_at <= lcut) then
  local sending = measured()
  if sending <= 0 then sending = MIN_RATE end
  if rate > 0 then sending = math.min(sending, rate) end
  wmax, lcut, adapt, epoch = sending, now, 1, epoch + 1
  rate = current_rate()
  -- Void every reservation made at the old rate: the bucket restarts empty at the new one.
  tat = now + (burst - 1) / rate
end

local wait = 0
if grant == 1 then
  local bucket = math.floor(now * 2) / 2
  if mstart == 0 then mstart, mb = now, bucket end
  mc = mc + 1
  if bucket > mb then
    local sample = mc / (bucket - mb)
    ms = sample * 0.8 + ms * 0.2
    mc, mb = 0, bucket
  end
  if rate > 0 then
    local interval = 1 / rate
    local tolerance = (burst - 1) * interval
    local base = math.max(tat, now)
    -- After a pause, resume at the steady rate rather than with a full burst.
    if pause > now then base = math.max(base, pause + tolerance) end
    tat = base + interval
    wait = math.max(0, base - tolerance - now)
  elseif pause > now then
    wait = pause - now
  end
end

redis.call('HSET', key, 'tat', tostring(tat), 'adapt', adapt, 'wmax', tostring(wmax), 'lcut', tostring(lcut),
  'pause', tostring(pause), 'mb', tostring(mb), 'mc', mc, 'ms', tostring(ms), 'epoch', epoch,
  'mstart', tostring(mstart))
redis.call('EXPIRE', key, ttl)
local nprocs = -1
if proc ~= '' then
  redis.call('ZADD', procs, now, proc)
  redis.call('ZREMRANGEBYSCORE', procs, '-inf', now - alive)
  redis.call('EXPIRE', procs, ttl)
  nprocs = redis.call('ZCARD', procs)
end
return {tostring(wait), tostring(rate), epoch, tostring(now), nprocs}
"""

#: The errors that mean "Redis is not there": fail open to the local limiter.
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError)


def quota_key(endpoint: str, access_key: str, *, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The bucket's key: the endpoint and a hash of the access key, never the key itself."""
    digest = hashlib.sha256(access_key.encode()).hexdigest()[:16]
    return f"{prefix}:{endpoint.rstrip('/')}:{digest}"


def redis_client(url: str, *, timeout: float = 1.0) -> aioredis.Redis:
    """A client for ``url`` (``redis://HOST:PORT/DB``) that fails fast: no retries, ``timeout`` per call.

    A slow or dead Redis must cost a request at most ``timeout`` once; the callers decide what happens next.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"a Redis URL starts with redis://, rediss:// or unix://, not {url.split(':', 1)[0]!r}")
    try:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL: {exc}") from None


@dataclasses.dataclass(slots=True)
class RedisLimiterStats:
    """What the limiter did: Redis calls, requests granted locally while Redis was away, outages, re-queues."""

    redis_calls: int = 0
    granted_shared: int = 0
    granted_local: int = 0
    requeued: int = 0
    fallbacks: int = 0
    reconnects: int = 0


class RedisLimiter:
    """A :class:`~snapcrawl.limits.Limiter` whose bucket and adaptive rate live in Redis, shared by processes.

    ``rate`` is the account's quota in requests/s (all processes together stay within it, 1% under as the local
    limiter does, plus ``burst``); without it, the processes discover the quota together from throttles.
    ``key`` overrides the bucket's key (default :func:`quota_key` of ``endpoint`` and ``access_key``).

    Use it as an async context manager (it owns the heartbeat and reconnection task), then pass it to
    ``Crawler(limiter=...)``. ``clock`` and ``sleep`` are seams for tests; Redis's own clock decides the slots.
    """

    JITTER_MARGIN: Final = 0.01
    MAX_NAP: Final = 0.1
    #: A process is counted alive while its last heartbeat is this recent (in heartbeat periods).
    ALIVE_PERIODS: Final = 5
    KEY_TTL: Final = 86_400

    active = True

    def __init__(
        self,
        client: aioredis.Redis | str,
        *,
        endpoint: str,
        access_key: str,
        rate: float | None = None,
        burst: int = 10,
        key: str | None = None,
        heartbeat: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ConfigError(f"rate must be > 0 requests/s, not {rate}")
        if burst < 1:
            raise ConfigError(f"burst must be >= 1, not {burst}")
        if not heartbeat > 0:
            raise ConfigError(f"heartbeat must be > 0 seconds, not {heartbeat}")
        self._owns_client = isinstance(client, str)
        self._client = redis_client(client) if isinstance(client, str) else client
        self.key = key or quota_key(endpoint, access_key)
        self._procs_key = f"{self.key}:processes"
        self.rate_limit = rate
        self._cap = 0.0 if rate is None else rate * (1 - self.JITTER_MARGIN)
        self.burst = burst
        self._heartbeat = heartbeat
        self._clock = clock
        self._sleep = sleep
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._script = self._client.register_script(_SCRIPT)
        self.stats = RedisLimiterStats()
        self._rate: float | None = None
        self._epoch = 0
        self._offset = 0.0  # Redis time minus our clock, from the last reply
        self._processes = 1
        self._throttled_at = 0.0  # Redis time of the latest throttled grant not yet reported
        self._retry_after = 0.0
        self._returned = 0
        self._returned_epoch = 0
        self._report = anyio.Event()
        self._local: AdaptiveRateLimiter | None = None
        self._warned = False
        self._task_group: TaskGroup | None = None

    def __repr__(self) -> str:
        mode = "local" if self._local is not None else "shared"
        return f"RedisLimiter(key={self.key!r}, rate={self.rate_limit!r}, burst={self.burst}, mode={mode!r})"

    @property
    def rate(self) -> float | None:
        """The rate in force for all processes (or this one's share, while Redis is away); ``None``: no cap."""
        if self._local is not None:
            return self._local.rate
        return self._rate

    @property
    def shared(self) -> bool:
        """Whether the bucket in Redis is in use (false while failing open to the local limiter)."""
        return self._local is None

    async def __aenter__(self) -> Self:
        try:
            await self._call(grant=False, heartbeat=True)  # loads the script, joins the heartbeat set
        except _UNAVAILABLE as exc:
            self._fall_back(exc)
        self._task_group = await anyio.create_task_group().__aenter__()
        self._task_group.start_soon(self._background)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(exc_type, exc, tb)
            self._task_group = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            try:
                if self._local is None:
                    await self._client.zrem(self._procs_key, self.process_id)
            except (*_UNAVAILABLE, RedisError):
                pass  # leaving the heartbeat set is a courtesy: the entry expires anyway
            if self._owns_client:
                await self._client.aclose()

    async def acquire(self) -> float:
        """Wait until one request may be sent; return the (local clock) time it was granted."""
        while True:
            if self._local is not None:
                return await self._acquire_local()
            try:
                wait, epoch = await self._call(grant=True)
            except _UNAVAILABLE as exc:
                self._fall_back(exc)
                continue
            if wait <= 0:
                self.stats.granted_shared += 1
                return self._clock()
            deadline = self._clock() + wait
            try:
                # Short naps, so that a cut seen by any process reaches callers that are already waiting.
                while (left := deadline - self._clock()) > 0 and epoch == self._epoch:
                    await self._sleep(min(left, self.MAX_NAP))
            except BaseException:
                if epoch == self._epoch:  # cancelled: give the slot back with the next call
                    if self._returned_epoch != epoch:
                        self._returned, self._returned_epoch = 0, epoch
                    self._returned += 1
                    self._report.set()
                raise
            if epoch == self._epoch:
                self.stats.granted_shared += 1
                return self._clock()
            self.stats.requeued += 1  # the rate was cut while we waited: queue again at the new one

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """An answer that was not a throttle: nothing to report (grants are counted in Redis)."""
        if self._local is not None:
            self._local.on_success()

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Report the throttle to every process (with the next call, or at once); this request waits as asked."""
        if self._local is not None:
            self._local.on_throttle(sent_at=ticket, retry_after=retry_after)
            return retry_after or 0.0
        if math.isfinite(ticket):
            self._throttled_at = max(self._throttled_at, ticket + self._offset)
        if retry_after:
            self._retry_after = max(self._retry_after, retry_after)
        self._report.set()
        return retry_after or 0.0

    async def _call(self, *, grant: bool, heartbeat: bool = False) -> tuple[float, int]:
        """One script call; carries the pending throttle report and returned slots. Returns (wait, epoch)."""
        throttled_at, retry_after, returned = self._throttled_at, self._retry_after, self._returned
        self._throttled_at = self._retry_after = 0.0
        self._returned = 0
        args: list[Any] = [
            repr(self._cap),
            self.burst,
            repr(throttled_at),
            repr(retry_after),
            int(grant),
            returned,
            self._returned_epoch,
            self.process_id if heartbeat else "",
            repr(self.ALIVE_PERIODS * self._heartbeat),
            self.KEY_TTL,
        ]
        self.stats.redis_calls += 1
        try:
            # Shielded (the socket timeout bounds it): a reservation made in Redis must not go unaccounted for.
            with anyio.CancelScope(shield=True):
                reply = await self._script(keys=[self.key, self._procs_key], args=args)
        except BaseException:
            # Not reported after all: keep it for the next call.
            self._throttled_at = max(self._throttled_at, throttled_at)
            self._retry_after = max(self._retry_after, retry_after)
            self._returned += returned
            raise
        received = self._clock()
        wait, rate, epoch, now, processes = float(reply[0]), float(reply[1]), int(reply[2]), float(reply[3]), reply[4]
        self._offset = now - received
        self._rate = rate or None
        self._epoch = max(self._epoch, epoch)
        if processes >= 0:
            self._processes = max(int(processes), 1)
        return wait, epoch

    def _fall_back(self, exc: BaseException) -> None:
        """Redis is away: pace this process alone, at its share of the last known rate."""
        if self._local is not None:
            return
        last = self._rate or self._cap or None
        share = None if last is None else last / self._processes
        # The local limiter keeps its own margin under the cap it is given: give it what undoes it.
        cap = None if share is None else share / (1 - AdaptiveRateLimiter.JITTER_MARGIN)
        self._local = AdaptiveRateLimiter(cap, burst=self.burst, clock=self._clock, sleep=self._sleep)
        self.stats.fallbacks += 1
        event = "limiter.redis_unavailable"
        fields = {"error": type(exc).__name__, "rate": share and round(share, 2), "processes": self._processes}
        if not self._warned:
            self._warned = True
            _log.warning(event, hint="pacing locally at a share of the last known rate; reconnecting", **fields)
        else:
            _log.info(event, **fields)

    async def _acquire_local(self) -> float:
        local = self._local
        assert local is not None  # noqa: S101 - checked by the caller
        self.stats.granted_local += 1
        if local.active:
            return await local.acquire()
        return self._clock()

    async def _background(self) -> None:
        """Heartbeats, throttle reports that no request carried, and reconnection while failing open."""
        while True:
            with anyio.move_on_after(self._heartbeat):
                await self._report.wait()
            self._report = anyio.Event()
            try:
                await self._call(grant=False, heartbeat=True)
            except _UNAVAILABLE as exc:
                self._fall_back(exc)
                continue
            except RedisError as exc:  # e.g. a script error: keep going locally rather than fail the crawl
                self._fall_back(exc)
                continue
            if self._local is not None:
                self._local = None
                self.stats.reconnects += 1
                _log.info("limiter.redis_restored", key=self.key, rate=self._rate and round(self._rate, 2))
