"""One quota shared by every process through Redis: a GCRA token bucket and a discovered rate, on Redis's clock.

Every process that uses the same Redis, endpoint and access key calls one Lua script (``EVALSHA``, reloaded on
``NOSCRIPT``). The script keeps, in one hash:

- the bucket in GCRA form (as the ``limits`` library's ``acquire_gcra.lua``): the theoretical arrival time
  ``tat``; a request may go at ``tat - tolerance`` (``tolerance = (burst - 1) * interval``) and pushes ``tat``
  one emission interval further. A caller *reserves* its slot and sleeps until it;
- the rate, shared: told (``rate``, kept 1% under), or discovered from the answers of every process together
  with the rounds of the ``limits`` branch's rate discovery (``RateDiscovery``): a round of answers that had
  throttles measures the quota as the rate the server admitted; a clean round probes upwards. So a throttle
  seen by any process slows all of them, and they never each adapt on their own. Told the quota, only rounds
  a quarter throttled or more cut the rate (the quota told is wrong); fewer throttles are jitter;
- a pause that a long ``Retry-After`` asked for, and an ``epoch`` that a large rate change increments:
  reservations made before it are void, and their holders queue again at the new rate.

Cost: the callers of ``acquire`` waiting at the same moment share one script call (a batch of slots), and the
answers (ok or throttled) ride on the next call, so a process makes at most one Redis round trip per request,
and fewer under load. A background task keeps a heartbeat set of the processes using the bucket and reports
throttles that no request carries soon enough. When Redis is unreachable or fails, the limiter fails open to a
local limiter holding a conservative share of the last known rate (divided by the processes seen alive), warns
once, and reconnects in the background; ``stats`` counts what happened (as Envoy's global rate limit does).
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
from .._redis_url import check_redis_client
from .local import Clock, LocalLimiter, Sleep

__all__ = ["DEFAULT_KEY_PREFIX", "RedisLimiter", "RedisLimiterStats", "quota_key", "redis_client"]

DEFAULT_KEY_PREFIX: Final = "snapcrawl:quota"

_log = structlog.get_logger("snapcrawl")

# KEYS: the bucket hash, the heartbeat set of processes.
# ARGV: 1 cap (requests/s, 0 = none), 2 burst, 3 slots to reserve (0 = report only), 4 ok answers and
#       5 throttled answers to requests granted since the round began, 6 their longest latency (s),
#       7 pause (s, 0 = none), 8 slots given back, 9 their epoch, 10 process id ('' = no heartbeat),
#       11 alive seconds, 12 ttl seconds, 13 the round (its start, as replied) the answers were counted for:
#       answers counted for an earlier round are dropped (they may be to requests sent at an earlier rate).
# Reply: epoch, rate (0 = none), now, since (start of the round), processes alive (-1 = not asked), then one
# wait (s) per slot. Floats as strings: Lua numbers turn into Redis integers otherwise.
_SCRIPT: Final = """
local key, procs = KEYS[1], KEYS[2]
local cap, burst, slots = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ok, thr, lag, pause_for = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local returned, returned_epoch = tonumber(ARGV[8]), tonumber(ARGV[9])
local proc, alive, ttl, counted_for = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13]
-- RateDiscovery's constants (snapcrawl/limits/_policy.py).
local MARGIN, ROUND_SECONDS, ROUND_ANSWERS, SLOW_ROUND = 0.02, 0.2, 20, 0.5
local FAST_THROTTLES, FAST_SHARE, FAST_SECONDS = 8, 0.25, 0.05
local PROBE_STEP, PROBE_LIMIT, RISE_SECONDS, FIRST_STEP, MAX_STEP = 0.02, 0.05, 1.0, 0.05, 0.25
local MAX_GROWTH, MIN_RATE, MAX_CUT, TRUST_SHARE, PACED = 2.0, 0.5, 0.3, 0.75, 0.85
local HORIZON, REQUEUE_STEP = 2.0, 0.05

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local f = {'tat', 'rate', 'since', 'epoch', 'rok', 'rthr', 'rfirst', 'rlag', 'est', 'step', 'top', 'wasthr', 'pause'}
local v = redis.call('HMGET', key, unpack(f))
local s = {}
for i, name in ipairs(f) do s[name] = tonumber(v[i]) or 0 end
if s.step == 0 then s.step = FIRST_STEP end
if counted_for ~= tostring(s.since) then ok, thr, lag = 0, 0, 0 end

local function reset_round(at)
  s.since, s.rok, s.rthr, s.rfirst, s.rlag = at, 0, 0, 0, 0
end

-- Send at `rate` from `at` on; answers to requests granted earlier belong to the old rate.
local function start(rate, at)
  rate = math.max(rate, MIN_RATE)
  if cap > 0 then rate = math.min(rate, cap) end
  local old = s.rate
  s.rate = rate
  reset_round(at)
  if old > 0 and math.abs(rate - old) > REQUEUE_STEP * old then
    -- A large change: void the reservations made at the old rate (after a cut they would overshoot, after a
    -- rise they may lie far ahead); their holders queue again, and the bucket restarts empty at the new rate.
    s.epoch = s.epoch + 1
    s.tat = now + ((cap > 0) and (burst - 1) or 0) / rate
  end
end

local function conclude(answered)
  local old = s.rate
  if PACED * old <= answered and answered <= old / PACED then answered = old end
  -- Told the quota, a few throttles mean jitter bunched some requests, not a wrong quota: no cut for them.
  local lone = (s.rthr == 1 and s.wasthr == 0) or (cap > 0 and s.rthr < FAST_SHARE * (s.rok + s.rthr))
  s.wasthr = (s.rthr > 0) and 1 or 0
  local rate
  if lone then
    rate, s.top = old, 0
  elseif s.rok == 0 then
    rate, s.step, s.top = math.min(old, answered) / 2, FIRST_STEP, 0
  elseif s.rthr > 0 then
    s.est = answered * s.rok / (s.rok + s.rthr)
    if s.rthr < TRUST_SHARE * (s.rok + s.rthr) then s.est = math.max(s.est, old * (1 - MAX_CUT)) end
    rate, s.step, s.top = math.min(s.est * (1 - MARGIN), old), FIRST_STEP, 0
  elseif s.est == 0 then
    rate, s.step = old * (1 + s.step), math.min(2 * s.step, MAX_STEP)
  else
    local top = s.est * (1 + PROBE_LIMIT)
    if old < top then
      rate, s.top = math.min(old + PROBE_STEP * s.est, top), 0
    else
      if s.top == 0 then
        s.top = now
      elseif now - s.top >= RISE_SECONDS then
        s.top, s.est, s.step = 0, s.est * (1 + s.step), math.min(2 * s.step, MAX_STEP)
      end
      rate = math.max(old, s.est * (1 + PROBE_LIMIT))
    end
  end
  start(math.min(rate, MAX_GROWTH * answered), now)
end

if returned > 0 and returned_epoch == s.epoch and s.rate > 0 and s.tat > now then
  s.tat = math.max(now, s.tat - returned / s.rate)
end
if s.rate == 0 and cap > 0 then start(cap, now) end
if cap > 0 and s.rate > cap then s.rate = cap end
if pause_for > 0 and now + pause_for > s.pause then
  s.pause = now + pause_for
  reset_round(s.pause)
end

if ok + thr > 0 then
  if s.rfirst == 0 then s.rfirst = now end
  s.rok, s.rthr, s.rlag = s.rok + ok, s.rthr + thr, math.max(s.rlag, lag)
end
local answers, elapsed = s.rok + s.rthr, now - s.rfirst
if s.rate == 0 then
  if s.rthr > 0 then
    -- The first throttle: start from the rate answers came back at lately (the server admitted them).
    start(answers / math.max(elapsed, 0.1) * (1 - MARGIN), now)
  elseif s.rfirst > 0 and elapsed > HORIZON then
    reset_round(0)
  end
elseif answers >= 2 then
  local long_enough = elapsed >= math.max(ROUND_SECONDS, 2 * s.rlag)
  if (long_enough and (answers >= ROUND_ANSWERS or elapsed >= SLOW_ROUND))
      or (s.rthr >= FAST_THROTTLES and s.rthr >= FAST_SHARE * answers and elapsed >= FAST_SECONDS) then
    conclude(answers / elapsed * (answers - 1) / answers)
  end
end

local reply = {s.epoch, tostring(s.rate), tostring(now), tostring(s.since), -1}
if slots > 0 then
  local rate = s.rate
  if rate > 0 then
    local interval = 1 / rate
    -- A told quota allows its burst; a discovered rate is paced evenly (a burst only finds the server's).
    local tolerance = ((cap > 0) and (burst - 1) or 0) * interval
    local tat = s.tat
    for _ = 1, slots do
      local base = math.max(tat, now)
      -- After a pause, resume at the steady rate rather than with a full burst.
      if s.pause > now then base = math.max(base, s.pause + tolerance) end
      tat = base + interval
      reply[#reply + 1] = tostring(math.max(0, base - tolerance - now))
    end
    s.tat = tat
  else
    for _ = 1, slots do reply[#reply + 1] = tostring(math.max(0, s.pause - now)) end
  end
end

local flat = {}
for _, name in ipairs(f) do
  flat[#flat + 1] = name
  flat[#flat + 1] = tostring(s[name])
end
redis.call('HSET', key, unpack(flat))
redis.call('EXPIRE', key, ttl)
if proc ~= '' then
  redis.call('ZADD', procs, now, proc)
  redis.call('ZREMRANGEBYSCORE', procs, '-inf', now - alive)
  redis.call('EXPIRE', procs, ttl)
  reply[5] = redis.call('ZCARD', procs)
end
return reply
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: The errors that mean "Redis is not there"; any other Redis error (a refused script, a key of another type)
#: makes the limiter fail open too, but is not expected to pass.
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
        return check_redis_client(
            aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        )
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL: {exc}") from None


@dataclasses.dataclass(slots=True)
class RedisLimiterStats:
    """What the limiter did: script calls, slots granted through Redis and locally, outages, re-queues."""

    redis_calls: int = 0
    granted_shared: int = 0
    granted_local: int = 0
    requeued: int = 0
    fallbacks: int = 0
    reconnects: int = 0


class _Slot:
    """One caller's place in the next batch of reservations."""

    __slots__ = ("done", "epoch", "error", "lead", "wait")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.lead = False
        self.wait = 0.0
        self.epoch = 0
        self.error: BaseException | None = None


class RedisLimiter:
    """A :class:`~snapcrawl.limits.Limiter` whose bucket and rate live in Redis, shared by every process.

    ``rate`` is the account's quota in requests/s: all processes together stay within it (1% under, as the local
    limiter does) plus ``burst``. Without it, they discover the quota together from throttles. ``key``
    overrides the bucket's key (default :func:`quota_key` of ``endpoint`` and ``access_key``).

    Use it as an async context manager (it owns the heartbeat and reconnection task), then pass it to
    ``Crawler(limiter=...)``. ``clock`` and ``sleep`` are seams for tests; Redis's own clock decides the slots.
    """

    JITTER_MARGIN: Final = 0.01
    MAX_NAP: Final = 0.1
    #: A Retry-After longer than this (seconds) pauses every process, not only the throttled request.
    LONG_RETRY_AFTER: Final = 3.0
    #: While Redis is away, a process runs at this share of (the last rate / the processes alive).
    FALLBACK_SHARE: Final = 0.95
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
        self._since = -math.inf  # start of the current round, on our clock
        self._round = ""  # the same, as the script wrote it: answers are reported for that round
        self._processes = 1
        # Reported with the next call: answers of the current round, a long pause, slots given back.
        self._ok = self._throttled = 0
        self._lag = self._pause = 0.0
        self._returned = self._returned_epoch = 0
        self._queue: list[_Slot] = []
        self._calling = False
        self._report = anyio.Event()
        self._local: LocalLimiter | None = None
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
            await self._call(0, heartbeat=True)  # loads the script, joins the heartbeat set
        except (*_UNAVAILABLE, RedisError) as exc:
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
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(1.0):
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
                wait, epoch = await self._reserve()
            except (*_UNAVAILABLE, RedisError) as exc:  # a refused script too: pace locally, do not fail
                self._fall_back(exc)
                continue
            if wait > 0:
                deadline = self._clock() + wait
                try:
                    # Short naps, so that a cut seen by any process reaches callers that are already waiting.
                    while (left := deadline - self._clock()) > 0 and epoch == self._epoch:
                        await self._sleep(min(left, self.MAX_NAP))
                except BaseException:
                    self._give_back(epoch)
                    raise
            if epoch == self._epoch:
                self.stats.granted_shared += 1
                return self._clock()
            self.stats.requeued += 1  # the rate was cut while we waited: queue again at the new one

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Count the answer for the shared rate discovery (reported with the next call)."""
        if self._local is not None:
            self._local.on_success(ticket, headers)
        elif ticket >= self._since:
            self._ok += 1
            self._lag = max(self._lag, self._clock() - ticket)

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Count the throttle for every process (reported at once); this request waits as the server asked.

        A ``Retry-After`` longer than :attr:`LONG_RETRY_AFTER` pauses every process.
        """
        if self._local is not None:
            return self._local.on_throttle(ticket, retry_after, headers)
        if ticket >= self._since:
            self._throttled += 1
            self._lag = max(self._lag, self._clock() - ticket)
        if retry_after is not None and retry_after > self.LONG_RETRY_AFTER:
            self._pause = max(self._pause, retry_after)
        self._report.set()
        return retry_after or 0.0

    def _give_back(self, epoch: int) -> None:
        """A caller cancelled while waiting: return its slot with the next call (if no cut voided it already)."""
        if epoch != self._epoch:
            return
        if self._returned_epoch != epoch:
            self._returned, self._returned_epoch = 0, epoch
        self._returned += 1
        self._report.set()

    async def _reserve(self) -> tuple[float, int]:
        """One slot: callers arriving while a call is in flight share the next call (one batch)."""
        slot = _Slot()
        self._queue.append(slot)
        if self._calling:
            try:
                await slot.done.wait()
            except BaseException:
                if slot in self._queue:
                    self._queue.remove(slot)
                if slot.lead:  # it was to make the next call: hand that on
                    self._calling = False
                    self._hand_on()
                elif slot.done.is_set() and slot.error is None:
                    self._give_back(slot.epoch)
                raise
            if not slot.lead:
                if slot.error is not None:
                    raise slot.error
                return slot.wait, slot.epoch
        await self._call_for_queue()
        if slot.error is not None:
            raise slot.error
        return slot.wait, slot.epoch

    async def _call_for_queue(self) -> None:
        """Reserve a slot for every queued caller in one script call; then hand the lead to the next batch."""
        self._calling = True
        batch, self._queue = self._queue, []
        try:
            waits, epoch = await self._call(len(batch))
        except BaseException as exc:
            for slot in batch:
                slot.error = exc
                slot.done.set()
            raise
        finally:
            self._calling = False
            self._hand_on()
        for slot, wait in zip(batch, waits, strict=True):
            slot.wait, slot.epoch = wait, epoch
            slot.done.set()

    def _hand_on(self) -> None:
        """Callers queued during a call: the first of them makes the next one."""
        if self._queue and not self._calling:
            self._calling = True
            self._queue[0].lead = True
            self._queue[0].done.set()

    async def _call(self, slots: int, *, heartbeat: bool = False) -> tuple[list[float], int]:
        """One script call, carrying what is to be reported. Returns the waits of ``slots`` slots, and the epoch."""
        ok, throttled, lag, pause = self._ok, self._throttled, self._lag, self._pause
        returned, returned_epoch = self._returned, self._returned_epoch
        self._ok = self._throttled = self._returned = 0
        self._lag = self._pause = 0.0
        args: list[Any] = [
            repr(self._cap),
            self.burst,
            slots,
            ok,
            throttled,
            repr(lag),
            repr(pause),
            returned,
            returned_epoch,
            self.process_id if heartbeat else "",
            repr(self.ALIVE_PERIODS * self._heartbeat),
            self.KEY_TTL,
            self._round,
        ]
        self.stats.redis_calls += 1
        try:
            # Shielded (the socket timeout bounds it): a reservation made in Redis must not go unaccounted for.
            with anyio.CancelScope(shield=True):
                reply = await self._script(keys=[self.key, self._procs_key], args=args)
        except BaseException:
            # Not reported after all: keep it for the next call.
            self._ok += ok
            self._throttled += throttled
            self._lag, self._pause = max(self._lag, lag), max(self._pause, pause)
            if returned_epoch == self._returned_epoch:
                self._returned += returned
            raise
        received = self._clock()
        epoch, rate, now, since, processes = int(reply[0]), float(reply[1]), float(reply[2]), float(reply[3]), reply[4]
        self._offset = now - received
        self._since = since - self._offset if since else -math.inf
        if self._round != (round_ := _text(reply[3])):
            self._round = round_
            self._ok = self._throttled = 0  # counted for the round before: no longer reported
            self._lag = 0.0
        self._rate = rate or None
        self._epoch = max(self._epoch, epoch)
        if processes >= 0:
            self._processes = max(int(processes), 1)
        return [float(wait) for wait in reply[5:]], epoch

    def _fall_back(self, exc: BaseException) -> None:
        """Redis is away: pace this process alone, at its share of the last known rate."""
        if self._local is not None:
            return
        last = self._rate or self._cap or None
        # Conservative: the processes no longer see each other's bursts, nor who has left or joined.
        share = None if last is None else last / self._processes * self.FALLBACK_SHARE
        # The local limiter keeps its own margin under the cap it is given: give it what undoes it.
        cap = None if share is None else share / (1 - self.JITTER_MARGIN)
        # The burst is shared too: together the processes stay within the quota plus one burst.
        burst = max(1, self.burst // self._processes)
        self._local = LocalLimiter(cap, burst=burst, clock=self._clock, sleep=self._sleep)
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
        """Heartbeats, reports that no request carried, and reconnection while failing open."""
        while True:
            with anyio.move_on_after(self._heartbeat):
                await self._report.wait()
            self._report = anyio.Event()
            try:
                await self._call(0, heartbeat=True)
            except (*_UNAVAILABLE, RedisError) as exc:  # a script error too: keep going locally, do not fail
                self._fall_back(exc)
                continue
            if self._local is not None:
                self._local = None
                self.stats.reconnects += 1
                _log.info("limiter.redis_restored", key=self.key, rate=self._rate and round(self._rate, 2))
