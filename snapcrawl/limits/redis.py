"""One quota shared by every process through Redis: a GCRA bucket handed out in leases, and one rate.

Redis keeps only the shared *state* (``lease.lua``): the bucket in GCRA form (the theoretical arrival time
``tat``), the rate in force and the cap told (``--rate``), the answers of the current round per process, the
policy's memory, and a registry of the processes alive. The *policy* that sets the rate is Python's
:class:`~snapcrawl.limits._policy.RateDiscovery`, the local limiter's own: any process whose call shows a round
that may end runs it and sends the new rate back, applied only if the round is still the one it judged. So the
Redis path and the local path cannot disagree.

Leases: a process takes tokens in batches sized to its share of the rate (the rate / the processes alive, times
:attr:`RedisLimiter.LEASE_SECONDS`, no more than it has lately used), one script call each: N consecutive GCRA
slots, so that all processes together never take more than the rate plus the burst. It spends them at its share
(one every ``processes / rate`` seconds, from its first slot), so that the processes together send evenly rather
than each in bunches at the whole rate, and takes the next lease before this one runs out. A token not sent
within :attr:`RedisLimiter.LATE` seconds (or two of the process's intervals) of its time expires, so that a
busy process never sends a late bunch; tokens still ahead when the process leaves are given back. The answers
ride on the next lease call. So a process makes about ``1 / LEASE_SECONDS`` calls a second, whatever its rate.

Bounds: a told rate, raised or lowered, voids every lease at once (a new epoch); every process notices at its
next call, within one lease period (``LEASE_SECONDS`` of its tokens, and at most about a second when it is idle).
A rate cut by the policy does the same.

Across runs: the rate and the policy's memory stay in Redis (a day after the last use). A round with no report
for :attr:`RedisLimiter.STALE_SECONDS` (an idle gap, a run that ended mid-round) restarts rather than counting the
gap; a clean round never lowers the rate; so the rate does not decay between runs. A told rate is in force from
the first call of a run that was told it.

Redis that refuses to work (wrong password, a read-only replica, out of memory) is a :class:`ConfigError` when
the limiter is entered, as is one that is not there at all. A Redis that goes away later makes the limiter fail
open: it paces locally at its share of the last rate (divided by the processes last seen alive), warns once,
and reconnects in the background; ``stats`` counts what happened.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import anyio
import redis.asyncio as aioredis
import structlog
from anyio.abc import TaskGroup
from redis.exceptions import RedisError

from .. import _redis
from .._exceptions import ConfigError
from ._policy import AnswerMeter, RateDiscovery
from .local import Clock, LocalLimiter, Sleep

__all__ = ["DEFAULT_KEY_PREFIX", "QuotaState", "RedisLimiter", "RedisLimiterStats", "quota_key", "read_quota_state"]

DEFAULT_KEY_PREFIX: Final = _redis.QUOTA_PREFIX

_log = structlog.get_logger("snapcrawl")


def quota_key(endpoint: str, access_key: str, *, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The bucket's key: the endpoint and a hash of the access key, never the key itself."""
    digest = hashlib.sha256(access_key.encode()).hexdigest()[:16]
    return f"{prefix}:{endpoint.rstrip('/')}:{digest}"


@dataclasses.dataclass(slots=True)
class RedisLimiterStats:
    """What the limiter did: script calls, leases and their tokens, grants through Redis and locally, outages."""

    redis_calls: int = 0
    leases: int = 0
    leased: int = 0
    expired: int = 0
    returned: int = 0
    granted_shared: int = 0
    granted_local: int = 0
    requeued: int = 0
    fallbacks: int = 0
    reconnects: int = 0
    #: Requests that waited for a lease call (the Redis round trip added to them), and their total wait.
    waited: int = 0
    waited_seconds: float = 0.0


@dataclasses.dataclass(slots=True)
class _Lease:
    """Tokens of the shared bucket, spread at this process's share: token ``k`` may go at ``start + k * interval``
    and expires ``late`` seconds after that."""

    epoch: int
    start: float  # on our clock
    interval: float  # the processes alive / the rate
    late: float
    count: int
    next: int = 0

    def left(self) -> int:
        return self.count - self.next

    def at(self, k: int) -> float:
        return self.start + k * self.interval

    @property
    def end(self) -> float:
        return self.start + self.count * self.interval


@dataclasses.dataclass(frozen=True, slots=True)
class _Round:
    """The answers of the current round, summed over the processes that reported them."""

    ok: int
    throttled: int
    lag: float
    first: float
    last: float
    rate: float  # the answers' rate: each process's (count - 1) over its own span, summed
    processes: int

    @classmethod
    def of(cls, fields: Mapping[str, float]) -> _Round | None:
        per: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for name, value in fields.items():
            kind, _, process = name.partition(":")
            per[process][kind] = value
        if not per:
            return None
        ok = int(sum(p.get("o", 0) for p in per.values()))
        throttled = int(sum(p.get("t", 0) for p in per.values()))
        spans = [(p.get("o", 0) + p.get("t", 0), p.get("l", 0) - p.get("f", 0)) for p in per.values()]
        measured = [(count - 1) / span for count, span in spans if span > 0 and count >= 2]
        rate = sum(measured)
        lag = max(p.get("g", 0.0) for p in per.values())
        first = min(p.get("f", math.inf) for p in per.values())
        last = max(p.get("l", -math.inf) for p in per.values())
        return cls(ok, throttled, lag, first, last, rate, len(per))


def _reports(batches: bytes | str) -> list[tuple[int, int, float, float, float]]:
    """The round's reports (ok, throttled, first answer, last answer, longest latency), by their last answer."""
    reports = []
    for record in _redis.text(batches).split(";"):
        parts = record.split(",")
        if len(parts) == 5:
            ok, thr, first, last, lag = parts
            reports.append((int(ok), int(thr), float(first), float(last), float(lag)))
    return sorted(reports, key=lambda report: report[3])


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaState:
    """What a quota key holds (``snapcrawl quota status``)."""

    key: str
    rate: float | None
    cap: float | None
    epoch: int
    processes: tuple[str, ...]
    estimate: float | None
    ttl: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "rate": self.rate,
            "told": self.cap,
            "estimate": self.estimate,
            "epoch": self.epoch,
            "processes": list(self.processes),
            "expires_in": self.ttl,
        }


async def read_quota_state(client: aioredis.Redis, key: str, *, alive: float) -> QuotaState | None:
    """What ``key`` holds, or ``None`` if it holds nothing; processes seen in the last ``alive`` seconds."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(key)
        pipe.ttl(key)
        pipe.time()
        raw, ttl, (seconds, micros) = await pipe.execute()
    if not raw:
        return None
    fields = {_redis.text(name): _redis.text(value) for name, value in raw.items()}
    now = seconds + micros / 1e6
    members: Any = await client.zrangebyscore(f"{key}:processes", now - alive, "+inf")
    policy = RateDiscovery.from_state(fields.get("policy", ""))

    def number(name: str) -> float:
        try:
            return float(fields.get(name, 0))
        except ValueError:
            return 0.0

    return QuotaState(
        key=key,
        rate=number("rate") or None,
        # The key holds the cap the processes pace at, 1% under --rate; status shows the rate as it was told.
        cap=round(number("cap") / (1 - RedisLimiter.JITTER_MARGIN), 6) or None,
        epoch=int(number("epoch")),
        processes=tuple(_redis.text(m) for m in members),
        estimate=policy.estimate,
        ttl=int(ttl),
    )


class RedisLimiter:
    """A :class:`~snapcrawl.limits.Limiter` whose bucket and rate live in Redis, shared by every process.

    ``rate`` is the account's quota in requests/s: all processes together stay within it (1% under, as the local
    limiter does) plus ``burst``. Without it, they discover the quota together from throttles. ``key``
    overrides the bucket's key (default :func:`quota_key` of ``endpoint`` and ``access_key``). ``client`` is a
    URL (``env:NAME`` reads it from the environment; the password may come from ``REDISCLI_AUTH``) or a client.

    Use it as an async context manager (entering checks that Redis works, and starts the heartbeat), then pass
    it to ``Crawler(limiter=...)``. ``clock`` and ``sleep`` are seams for tests; ``redis_time=False`` makes the
    script take the time from ``clock`` too, so that a test can drive the shared policy on a fake clock.
    ``option`` names the setting in error messages (the CLI's ``--limiter``).
    """

    JITTER_MARGIN: Final = LocalLimiter.JITTER_MARGIN
    MAX_NAP: Final = 0.1
    #: A lease holds at most this many seconds of the process's share of a told rate; a discovered rate moves
    #: more, so its leases are shorter (a cut reaches every process sooner).
    LEASE_SECONDS: Final = 0.5
    DISCOVERING_LEASE_SECONDS: Final = 0.1
    #: While no rate is known (discovering, before the first throttle), report this often: the first throttle
    #: must reach every process before they all overrun the quota.
    UNPACED_REPORT_SECONDS: Final = 0.05
    #: Take the next lease when the tokens in hand last less than this (or four round trips to Redis).
    PREFETCH: Final = 0.02
    #: A leased token unused this long after its time expires (or two of the process's intervals, if longer):
    #: a process that fell behind never sends a late bunch.
    LATE: Final = 0.002
    #: A round with no report for this long restarts: answers around an idle gap are not a rate.
    STALE_SECONDS: Final = AnswerMeter.HORIZON
    #: A Retry-After longer than this (seconds) pauses every process, not only the throttled request.
    LONG_RETRY_AFTER: Final = LocalLimiter.LONG_RETRY_AFTER
    #: A rate change larger than this share voids the leases granted at the old rate.
    REQUEUE_STEP: Final = LocalLimiter.REQUEUE_STEP
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
        redis_time: bool = True,
        option: str = "limiter",
    ) -> None:
        if rate is not None and not rate > 0:
            raise ConfigError(f"rate must be > 0 requests/s, not {rate}")
        if burst < 1:
            raise ConfigError(f"burst must be >= 1, not {burst}")
        if not heartbeat > 0:
            raise ConfigError(f"heartbeat must be > 0 seconds, not {heartbeat}")
        self._owns_client = isinstance(client, str)
        self._client = _redis.client(client, role="limiter", option=option) if isinstance(client, str) else client
        self._server = _redis.server_of(self._client)
        self.key = key or quota_key(endpoint, access_key)
        self._procs_key = f"{self.key}:processes"
        self.rate_limit = rate
        self._told = 0.0 if rate is None else rate * (1 - self.JITTER_MARGIN)
        self.burst = burst
        self._heartbeat_period = heartbeat
        self._clock = clock
        self._sleep = sleep
        self._redis_time = redis_time
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._script = _redis.script(self._client, "lease.lua", registry=True)
        self.stats = RedisLimiterStats()
        # What the last reply said.
        self._rate: float | None = None
        self._cap = 0.0
        self._epoch = 0
        self._offset = 0.0  # Redis time minus our clock
        self._round = ""
        self._since = -math.inf  # start of the round, on our clock
        self._paused_until = -math.inf
        self._processes = 1
        # What the next call reports: answers of the round, a long pause, tokens given back, a conclusion.
        self._ok = self._throttled = 0
        self._lag = 0.0
        self._first = self._last = math.nan
        self._pause = 0.0
        self._conclusion: tuple[str, float, str, bool] | None = None
        self._leases: collections.deque[_Lease] = collections.deque()
        self._spare: list[tuple[float, float, int]] = []  # tokens given back by cancelled callers
        self._waiting = 0
        self._taken = 0
        self._demand = math.inf  # tokens/s lately taken (inf: not measured yet)
        self._measured_at = (math.nan, 0)
        self._next_beat = -math.inf
        self._rtt = 0.0  # a script call's round trip, smoothed
        self._lock = anyio.Lock()
        self._beat = _redis.Heartbeat(self._background, min(heartbeat, self.UNPACED_REPORT_SECONDS))
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
            await self._call(0, tell=True, heartbeat=True)  # loads the script, tells the rate, joins the registry
        except (RedisError, OSError) as exc:
            if self._owns_client:
                await self._client.aclose()
            error = _redis.as_error(exc, server=self._server, doing=f"the shared quota {self.key}")
            raise ConfigError(str(error)) from None
        self._task_group = await anyio.create_task_group().__aenter__()
        self._task_group.start_soon(self._beat.run)
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
                    # Give back the tokens still ahead, report the last answers, and leave the registry.
                    await self._call(0, returned=self._unused())
                    await self._client.zrem(self._procs_key, self.process_id)
            except (RedisError, OSError):
                pass  # a courtesy: unused tokens expire, the registry entry ages out
        if self._owns_client:
            with anyio.CancelScope(shield=True):
                await self._client.aclose()

    # ------------------------------------------------------------------------------------------------ acquire
    async def acquire(self) -> float:
        """Wait until one request may be sent; return the (local clock) time it was granted."""
        while True:
            if self._local is not None:
                return await self._acquire_local()
            now = self._clock()
            if now < self._paused_until:
                await self._sleep(min(self._paused_until - now, self.MAX_NAP))
                continue
            if self._rate is None:  # nothing to pace yet: every process goes, and reports its answers
                self._taken += 1
                self.stats.granted_shared += 1
                return now
            token = self._take(now)
            if token is None:
                await self._refill()
                continue
            allowed, expiry, epoch = token
            try:
                # Short naps, so that a void lease (a cut, a told rate) reaches callers that are already waiting.
                while (left := allowed - self._clock()) > 1e-6 and epoch == self._epoch:
                    await self._sleep(min(left, self.MAX_NAP))
            except BaseException:
                if epoch == self._epoch:
                    self._spare.append(token)
                raise
            if epoch != self._epoch:
                self.stats.requeued += 1
                continue
            now = self._clock()
            if now > expiry:  # woke too late (a busy process): sending now would bunch with the next ones
                self.stats.expired += 1
                continue
            self._taken += 1
            self.stats.granted_shared += 1
            return now

    def _take(self, now: float) -> tuple[float, float, int] | None:
        """The next usable token (its time, its expiry, its epoch); expired and void ones are dropped."""
        while self._spare:
            token = self._spare.pop()
            if token[2] == self._epoch and token[1] >= now:
                return token
        leases = self._leases
        while leases:
            lease = leases[0]
            if lease.epoch != self._epoch:
                leases.popleft()
                continue
            late = now - lease.late - lease.start
            if late > 0:  # tokens whose time passed unused too long ago: never send them in a bunch
                skip = min(math.ceil(late / lease.interval), lease.count) - lease.next
                if skip > 0:
                    lease.next += skip
                    self.stats.expired += skip
            if lease.next >= lease.count:
                leases.popleft()
                continue
            at = lease.at(lease.next)
            lease.next += 1
            if self._low(now):
                self._beat.poke()  # take the next lease before this one runs out
            return at, at + lease.late, lease.epoch
        return None

    async def _refill(self) -> None:
        """No token left: take a lease (one call at a time; callers queued behind it find its tokens)."""
        self._waiting += 1
        self.stats.waited += 1
        started = time.perf_counter()
        try:
            async with self._lock:
                if self._local is not None or self._rate is None or self._has_tokens():
                    return
                try:
                    await self._call(self._want())
                except (RedisError, OSError) as exc:
                    self._fall_back(exc)
        finally:
            self._waiting -= 1
            self.stats.waited_seconds += time.perf_counter() - started

    def _has_tokens(self) -> bool:
        return bool(self._spare) or any(lease.left() and lease.epoch == self._epoch for lease in self._leases)

    def _want(self) -> int:
        """The next lease's size: this process's share of ``LEASE_SECONDS``, no more than it lately used."""
        if self._rate is None:
            return 0
        seconds = self._lease_seconds()
        most = max(1, math.ceil(self._rate / self._processes * seconds))
        if math.isinf(self._demand):
            return most
        return min(most, max(self._waiting, math.ceil(self._demand * seconds * 1.25), 1))

    def _lease_seconds(self) -> float:
        return self.LEASE_SECONDS if self._cap else self.DISCOVERING_LEASE_SECONDS

    def _unused(self) -> int:
        """Tokens of this epoch whose slot is still ahead: given back rather than wasted."""
        now = self._clock()
        count = 0
        for lease in self._leases:
            if lease.epoch == self._epoch:
                ahead = lease.count - max(lease.next, math.ceil((now - lease.start) / lease.interval))
                count += max(ahead, 0)
        return count

    # ------------------------------------------------------------------------------------------------ answers
    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Count the answer for the shared rate discovery (reported with the next call)."""
        if self._local is not None:
            self._local.on_success(ticket, headers)
        elif ticket >= self._since:
            self._count(ticket)
            self._ok += 1

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Count the throttle for every process (reported at once); this request waits as the server asked.

        A ``Retry-After`` longer than :attr:`LONG_RETRY_AFTER` pauses every process.
        """
        if self._local is not None:
            return self._local.on_throttle(ticket, retry_after, headers)
        if ticket >= self._since:
            self._count(ticket)
            self._throttled += 1
        if retry_after is not None and retry_after > self.LONG_RETRY_AFTER:
            self._pause = max(self._pause, retry_after)
        self._beat.poke()
        return retry_after or 0.0

    def _count(self, ticket: float) -> None:
        now = self._clock()
        if self._ok + self._throttled == 0:
            self._first = now
        self._last = now
        self._lag = max(self._lag, now - ticket)

    async def report(self) -> None:
        """Report the answers counted so far now, and apply what the policy concludes from them (tests use it;
        the heartbeat does it within ``LEASE_SECONDS``)."""
        async with self._lock:
            if self._local is None:
                try:
                    await self._call(0)
                except (RedisError, OSError) as exc:
                    self._fall_back(exc)

    # ------------------------------------------------------------------------------------------------ the call
    async def _call(self, wanted: int, *, tell: bool = False, heartbeat: bool = False, returned: int = 0) -> None:
        """One script call carrying what is to be reported; then again at once if the policy ended the round."""
        for _ in range(2):
            await self._call_once(wanted, tell=tell, heartbeat=heartbeat, returned=returned)
            if self._conclusion is None:
                return
            wanted = returned = 0
            tell = heartbeat = False

    async def _call_once(self, wanted: int, *, tell: bool, heartbeat: bool, returned: int) -> None:
        ok, throttled, lag, first, pause = self._ok, self._throttled, self._lag, self._first, self._pause
        last = self._last
        conclusion, self._conclusion = self._conclusion, None
        self._ok = self._throttled = 0
        self._lag = self._pause = 0.0
        self._first = math.nan
        now = self._clock()
        heartbeat = heartbeat or now >= self._next_beat
        round_, rate, state, void = conclusion or ("", 0.0, "", False)
        args: list[Any] = [
            self.process_id,
            wanted,
            returned,
            self._epoch,
            ok,
            throttled,
            repr(lag),
            repr(first + self._offset if ok + throttled else 0.0),
            self._round,
            int(tell),
            repr(self._told),
            self.burst,
            repr(pause),
            int(heartbeat),
            repr(self.ALIVE_PERIODS * self._heartbeat_period),
            self.KEY_TTL,
            round_,
            repr(rate),
            state,
            int(void),
            repr(self.STALE_SECONDS),
            "" if self._redis_time else repr(now),
            repr(last + self._offset if ok + throttled else 0.0),
        ]
        self.stats.redis_calls += 1
        try:
            # Shielded (the socket timeout bounds it): a lease granted in Redis must not go unaccounted for.
            with anyio.CancelScope(shield=True):
                reply = await self._script(keys=[self.key, self._procs_key], args=args)
        except BaseException:
            self._ok += ok  # not reported after all: keep it for the next call
            self._throttled += throttled
            self._lag, self._pause = max(self._lag, lag), max(self._pause, pause)
            if ok + throttled and not first > self._first:
                self._first = first
            if ok + throttled and math.isnan(self._last):
                self._last = last
            raise
        if heartbeat:
            self._next_beat = now + self._heartbeat_period
        self._rtt += (max(self._clock() - now, 0.0) - self._rtt) / 8
        if returned:
            self.stats.returned += returned
        self._apply(reply, now=self._clock())

    def _apply(self, reply: Sequence[Any], *, now: float) -> None:
        """Take in what the script answered: the rate, the round, a lease; then judge the round."""
        epoch, rate, cap, redis_now, since, round_, processes, pause, base, leased, tolerance, state, batches, *flat = (
            reply
        )
        offset = float(redis_now) - now
        self._offset = offset
        round_text = _redis.text(round_)
        if round_text != self._round:
            self._round = round_text
            self._ok = self._throttled = 0  # counted for the round before: no longer reported
            self._lag = 0.0
            self._first = math.nan
        self._since = float(since) - offset
        self._rate = float(rate) or None
        self._cap = float(cap)
        self._beat.period = self._beat_period()
        self._paused_until = float(pause) - offset
        if int(epoch) != self._epoch:
            self._epoch = int(epoch)
            self._leases.clear()
            self._spare.clear()
        if int(processes) >= 0:
            self._processes = max(int(processes), 1)
        if int(leased) > 0:
            # Spread at this process's share, from its first slot (less the burst's tolerance), after the tokens
            # it holds: the processes together send at the rate, none in bunches at the whole rate.
            interval = self._processes / float(rate)
            start = float(base) - offset - float(tolerance)
            ends = [lease.end for lease in self._leases if lease.epoch == self._epoch and lease.left()]
            start = max([start, *ends])
            late = max(self.LATE, 2 * interval)
            self._leases.append(_Lease(self._epoch, start, interval, late, int(leased)))
            self.stats.leases += 1
            self.stats.leased += int(leased)
            self._measure(now)
        fields = {_redis.text(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}
        self._judge(float(redis_now), float(since), round_text, _redis.text(state), _Round.of(fields), batches=batches)

    def _beat_period(self) -> float:
        """How often the background reports: often while nothing paces the processes, else once a lease."""
        if self._rate is None:
            return min(self._heartbeat_period, self.UNPACED_REPORT_SECONDS)
        return min(self._heartbeat_period, self._lease_seconds())

    def _measure(self, now: float) -> None:
        """How many tokens a second this process has lately taken: the next leases are no larger than that."""
        then, taken = self._measured_at
        if not math.isnan(then) and now - then >= self._lease_seconds():
            self._demand = (self._taken - taken) / (now - then)
            self._measured_at = (now, self._taken)
        elif math.isnan(then):
            self._measured_at = (now, self._taken)

    def _judge(
        self, now: float, since: float, round_: str, state: str, answers: _Round | None, *, batches: bytes | str
    ) -> None:
        """Run the policy on the round's answers, all processes' together; a conclusion goes with the next call."""
        if answers is None:
            return
        policy = RateDiscovery.from_state(state, ceiling=self._cap or None)
        rate = self._rate
        # Several processes: judge the round once each has had the time to report in it (every process reports
        # at least once a period), so that the first reports are not read as the whole rate.
        if self._processes > 1 and now - since < self._beat_period():
            return
        if rate is None:
            if not answers.throttled:
                return
            # The first throttle: start from the rate answers came back at lately (the server admitted them), all
            # processes' answers over the round, as the local limiter's meter does (not over less than its
            # MIN_SPAN: the first answers come back together).
            count = answers.ok + answers.throttled
            answered = count / max(answers.last - answers.first, AnswerMeter.MIN_SPAN)
            policy.start(answered * (1 - RateDiscovery.MARGIN), now)
        else:
            # The reports as the policy would have heard their answers: in the order of their last answers. One
            # answer a report is exactly the local path.
            policy.start(rate, since)
            if not any(
                policy.answers(ok, thr, last, lag=lag, first=first) for ok, thr, first, last, lag in _reports(batches)
            ):
                return
        new = policy.rate
        if new is None:
            return
        void = rate is None or abs(new - rate) > self.REQUEUE_STEP * rate
        self._conclusion = (round_, new, policy.to_state(), void)
        if rate is None or new < rate:
            _log.debug("rate.decreased", rate=round(new, 2), key=self.key, shared=True)

    # ------------------------------------------------------------------------------------------------ failing open
    def _fall_back(self, exc: BaseException) -> None:
        """Redis is away: pace this process alone, at its share of the last known rate."""
        if self._local is not None:
            return
        last = self._rate or self._told or None
        # Conservative: the processes no longer see each other's bursts, nor who has left or joined.
        share = None if last is None else last / self._processes * self.FALLBACK_SHARE
        # The local limiter keeps its own margin under the cap it is given: give it what undoes it.
        cap = None if share is None else share / (1 - self.JITTER_MARGIN)
        # The burst is shared too: together the processes stay within the quota plus one burst.
        burst = max(1, self.burst // self._processes)
        self._local = LocalLimiter(cap, burst=burst, clock=self._clock, sleep=self._sleep)
        self._leases.clear()
        self._spare.clear()
        self.stats.fallbacks += 1
        event = "limiter.redis_unavailable"
        reason = _redis.refusal(exc) or type(exc).__name__
        fields = {"error": reason, "rate": share and round(share, 2), "processes": self._processes}
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
        """Reports, heartbeats and the next lease ahead of need; reconnection while failing open."""
        async with self._lock:
            now = self._clock()
            prefetch = self._rate is not None and self._local is None and self._waiting == 0 and self._low(now)
            due = self._ok + self._throttled > 0 or self._pause > 0 or now >= self._next_beat
            if self._local is None and not (prefetch or due):
                return
            try:
                await self._call(self._want() if prefetch else 0, heartbeat=self._local is not None)
            except (RedisError, OSError) as exc:
                self._fall_back(exc)
                return
            if self._local is not None:
                self._local = None
                self.stats.reconnects += 1
                _log.info("limiter.redis_restored", key=self.key, rate=self._rate and round(self._rate, 2))

    def _low(self, now: float) -> bool:
        """Whether the tokens in hand run out before a call made now would be back (then take the next lease now:
        a caller should not wait for Redis; at low rates it waits for its slot anyway)."""
        end = -math.inf
        for lease in self._leases:
            if lease.epoch == self._epoch and lease.left():
                end = max(end, lease.at(lease.count - 1))
        return end - now < max(self.PREFETCH, 4 * self._rtt)
