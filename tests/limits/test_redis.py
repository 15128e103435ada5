"""The Redis-shared limiter: one GCRA bucket handed out in leases, one rate for every process, chosen by the same
policy as the local limiter's; failing open when Redis goes mid-crawl, refusing to start on a Redis that refuses."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis.asyncio as aioredis

from snapcrawl import _redis
from snapcrawl._exceptions import ConfigError
from snapcrawl.limits import Limiter, LocalLimiter
from snapcrawl.limits.redis import RedisLimiter, quota_key, read_quota_state
from tests.redis_server import RedisServer

from ..logs import capture_logs

ACCESS_KEY = "AKIA-very-secret-access-key"
ENDPOINT = "http://127.0.0.1:9"


_BEATS = _redis.Heartbeat.run


class FakeTime:
    """A clock that only moves when someone sleeps: waits are measured without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        await anyio.lowlevel.checkpoint()


async def eventually(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (polling), failing after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - state of another task, with no event to wait on
            await anyio.sleep(0.01)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_limiter(
    redis_server: RedisServer, redis_client: aioredis.Redis, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., RedisLimiter]:
    """Limiters on the shared (flushed) server, one per simulated process, on the fake clock.

    Without their background beats, which run on real time: a beat that reports answers or leases tokens ahead of
    need at a moment set by Redis's round trips on a loaded machine makes a fake-clock test a race. Reports and
    leases happen when the test calls ``report()`` and ``acquire()``.
    """
    monkeypatch.setattr(_redis.Heartbeat, "run", lambda self: anyio.sleep_forever())

    def make(**kwargs: object) -> RedisLimiter:
        settings: dict[str, object] = {"endpoint": ENDPOINT, "access_key": ACCESS_KEY, "burst": 3}
        settings.update(kwargs)
        return RedisLimiter(
            redis_server.url,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            redis_time=False,  # the script's time is the fake clock's: nothing depends on real time
            **settings,  # type: ignore[arg-type]
        )

    return make


@contextlib.asynccontextmanager
async def two(make: Callable[..., RedisLimiter]) -> AsyncIterator[tuple[RedisLimiter, RedisLimiter]]:
    """Two limiters of the same account, as two processes would hold them, capped at 1 request/s.

    Entered in the test itself: a task group must be left in the task that entered it.
    """
    async with make(rate=1.0) as first, make(rate=1.0) as second:
        yield first, second


def test_key_names_endpoint_and_hashes_access_key() -> None:
    """The bucket key holds the endpoint and a hash of the access key, never the key itself."""
    key = quota_key(ENDPOINT + "/", ACCESS_KEY)
    assert key.startswith(f"snapcrawl:quota:{ENDPOINT}:")
    assert ACCESS_KEY not in key
    assert key != quota_key(ENDPOINT, "another-key")
    assert key != quota_key("http://127.0.0.1:10", ACCESS_KEY)


def test_no_secret_in_repr_and_key_override(make_limiter: Callable[..., RedisLimiter]) -> None:
    """The limiter's repr shows the key, not the access key; ``key=`` replaces the derived key."""
    limiter = make_limiter(key="team:quota")
    assert limiter.key == "team:quota"
    assert ACCESS_KEY not in repr(make_limiter())
    typed: Limiter = limiter  # the protocol, checked by mypy
    assert typed.active


@pytest.mark.parametrize("kwargs", [{"rate": 0.0}, {"burst": 0}, {"heartbeat": -1.0}])
def test_bad_settings_are_config_errors(make_limiter: Callable[..., RedisLimiter], kwargs: dict[str, float]) -> None:
    """Invalid settings raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        make_limiter(**kwargs)


def test_bad_url_is_a_config_error() -> None:
    """A URL that is not a Redis URL is a ConfigError."""
    with pytest.raises(ConfigError, match="redis://"):
        RedisLimiter("http://127.0.0.1:6379", endpoint=ENDPOINT, access_key=ACCESS_KEY)


async def test_burst_then_paced_across_processes(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """Two processes share one bucket: three requests at once between them, the fourth a second later."""
    async with two(make_limiter) as (first, second):
        for limiter in (first, second, first):
            await limiter.acquire()
        assert fake_time.slept == 0.0
        await second.acquire()
        assert fake_time.slept == pytest.approx(1 / 0.99)
        assert first.rate == second.rate == pytest.approx(0.99)


async def test_cancelled_waiter_keeps_its_token(make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime) -> None:
    """A request cancelled while waiting puts its token back: the next one waits one interval, not two."""
    async with make_limiter(rate=1.0) as limiter:
        for _ in range(3):
            await limiter.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(limiter.acquire)
            while fake_time.slept == 0:  # cancelled at its first nap, waiting for its slot
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        await limiter.acquire()
        assert fake_time.slept <= 1.02


async def _answer(limiter: RedisLimiter, fake_time: FakeTime, *, throttled: bool = False, gap: float = 0.01) -> None:
    fake_time.now += gap
    ticket = fake_time.now - gap / 2
    if throttled:
        limiter.on_throttle(ticket, None, {})
    else:
        limiter.on_success(ticket, {})


async def test_first_throttle_caps_every_process(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """Discovering (no rate): the first throttle anywhere gives every process one rate, from the answers so far."""
    async with make_limiter() as first, make_limiter() as second:
        for _ in range(20):
            await first.acquire()
            await _answer(first, fake_time)
        await first.report()
        assert first.rate is None
        await _answer(first, fake_time, throttled=True)
        await first.report()
        rate = first.rate
        assert rate == pytest.approx(100 * (1 - 0.02), rel=0.1)  # answers came at 100/s
        await second.report()
        assert second.rate == rate


async def test_throttled_round_slows_every_process(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """Told 100/s, a round of answers a third throttled cuts the one shared rate: the other process slows too."""
    async with make_limiter(rate=100.0, burst=50) as first, make_limiter(rate=100.0, burst=50) as second:
        for n in range(60):  # with two processes, a round is judged after a lease period (0.5 s)
            await _answer(first, fake_time, throttled=not n % 3)
        await first.report()
        assert first.rate is not None
        assert first.rate < 99 * 0.95
        await second.report()
        assert second.rate == first.rate


async def test_throttle_report_does_not_wait_for_a_request(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttle is reported in the background when no request of the process comes to carry it."""
    monkeypatch.setattr(_redis.Heartbeat, "run", _BEATS)  # the background is what this test is about
    async with make_limiter() as first, make_limiter() as second:
        for _ in range(5):
            await _answer(first, fake_time)
        await _answer(first, fake_time, throttled=True)
        with anyio.fail_after(10):
            while second.rate is None:
                fake_time.now += 0.01
                await second.report()
                await anyio.sleep(0.01)


async def test_long_retry_after_pauses_every_process(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """A long Retry-After seen by one process holds back the others; a short one only the throttled request."""
    async with two(make_limiter) as (first, second):
        assert first.on_throttle(await first.acquire(), 2.0, {}) == 2.0
        await first.report()
        before = fake_time.slept
        await second.acquire()
        assert fake_time.slept - before < 1.0
        assert first.on_throttle(await first.acquire(), 5.0, {}) == 5.0
        await first.report()
        before = fake_time.slept
        await second.report()
        await second.acquire()
        assert fake_time.slept - before > 3.0


async def test_concurrent_callers_share_leases(make_limiter: Callable[..., RedisLimiter]) -> None:
    """Callers that acquire at the same moment share leases: far fewer script calls than requests."""
    async with make_limiter(rate=1e5, burst=1000) as limiter:
        calls_before = limiter.stats.redis_calls
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(limiter.acquire)
        assert limiter.stats.granted_shared == 200
        assert limiter.stats.redis_calls - calls_before <= 5


async def test_a_lease_is_sized_to_the_share(make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime) -> None:
    """Two processes told 400/s: each lease holds at most a quarter second of its half."""
    async with make_limiter(rate=400.0) as first, make_limiter(rate=400.0):
        fake_time.now += 1.0  # the first's next call is a heartbeat: it sees both processes
        await first.report()
        await first.acquire()
        assert first.stats.leased == math.ceil(400 * 0.99 / 2 * RedisLimiter.LEASE_SECONDS)


async def test_unused_tokens_are_given_back(make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime) -> None:
    """A process that leaves with tokens still ahead gives them back: the next process need not wait for them."""
    async with make_limiter(rate=100.0, burst=1) as first:
        await first.acquire()  # a lease of 25 tokens: the bucket is booked a quarter second ahead
    assert first.stats.returned == first.stats.leased - 1
    async with make_limiter(rate=100.0, burst=1) as second:
        before = fake_time.slept
        await second.acquire()
        await second.acquire()
        assert fake_time.slept - before == pytest.approx(1 / 99)


async def test_reloads_script_after_noscript(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """EVALSHA answered NOSCRIPT (the script cache was flushed) loads the script again and goes on."""
    async with make_limiter(rate=100.0) as limiter:
        await limiter.acquire()
        await redis_client.script_flush()
        await limiter.report()
        assert limiter.shared
        assert limiter.stats.fallbacks == 0


async def test_heartbeat_counts_processes(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """Each limiter joins the heartbeat set while open and leaves it when closed."""
    async with make_limiter() as first, make_limiter() as second:
        members = await redis_client.zrange(first.key + ":processes", 0, -1)
        assert {m.decode() for m in members if isinstance(m, bytes)} == {first.process_id, second.process_id}
    assert await redis_client.zcard(first.key + ":processes") == 0


async def test_redis_dies_and_returns(own_redis_server: RedisServer) -> None:
    """Redis killed mid-crawl: warn once, pace locally at a share of the last rate, reconnect when it is back."""
    settings = {"endpoint": ENDPOINT, "access_key": ACCESS_KEY, "rate": 400.0, "burst": 5, "heartbeat": 0.05}
    with capture_logs() as logs:
        async with (
            RedisLimiter(own_redis_server.url, **settings) as first,  # type: ignore[arg-type]
            RedisLimiter(own_redis_server.url, **settings) as second,  # type: ignore[arg-type]
        ):
            await first.acquire()
            await second.acquire()
            await eventually(lambda: first._processes == 2)  # the heartbeat has seen both
            own_redis_server.kill()
            with anyio.fail_after(20):
                while first.shared:
                    await first.acquire()
            for _ in range(20):
                await first.acquire()
            assert first.rate == pytest.approx(400 * 0.99 / 2 * RedisLimiter.FALLBACK_SHARE)
            assert first.stats.granted_local >= 20
            own_redis_server.start()
            await eventually(lambda: first.shared)
            await first.acquire()
            assert first.stats.reconnects == 1
    warnings = [log for log in logs if log["log_level"] == "warning"]
    assert [log["event"] for log in warnings].count("limiter.redis_unavailable") <= 2  # once per limiter
    assert all(ACCESS_KEY not in str(log) for log in logs)


async def test_unreachable_at_start_is_a_config_error(nowhere: str) -> None:
    """No Redis at all when the crawl starts: a ConfigError naming the server, not a crawl at the whole rate."""
    limiter = RedisLimiter(nowhere, endpoint=ENDPOINT, access_key=ACCESS_KEY, rate=50.0)
    with pytest.raises(ConfigError, match=f"Redis at {nowhere[8:]} unreachable"):
        async with limiter:
            pass


async def test_key_of_another_type_is_a_config_error(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """The quota's key holds another program's value: refused at start, naming the problem."""
    limiter = make_limiter(rate=10.0)
    await redis_client.set(limiter.key, "not a hash")
    with pytest.raises(ConfigError, match="a key of another type"):
        async with limiter:
            pass


async def test_refusal_mid_crawl_fails_open(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """A Redis that starts refusing mid-crawl (here: the key replaced) makes the limiter pace locally, warning once."""
    with capture_logs() as logs:
        async with make_limiter(rate=10.0) as limiter:
            await limiter.acquire()
            await redis_client.delete(limiter.key)
            await redis_client.set(limiter.key, "not a hash")
            await limiter.report()
            await limiter.acquire()
            assert not limiter.shared
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["limiter.redis_unavailable"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (["CONFIG", "SET", "requirepass", "s3cret-pw"], "refused the credentials"),
        (["CONFIG", "SET", "maxmemory", "1"], "out of memory"),
        (["REPLICAOF", "127.0.0.1", "1"], "read-only replica"),
    ],
)
async def test_a_redis_that_refuses_is_a_config_error(
    own_redis_server: RedisServer, setup: list[str], message: str
) -> None:
    """Wrong password, out of memory, a read-only replica: each a ConfigError at start naming it, never a secret."""
    admin = aioredis.Redis.from_url(own_redis_server.url)
    await admin.execute_command(*setup)  # type: ignore[no-untyped-call]
    await admin.aclose()
    limiter = RedisLimiter(own_redis_server.url, endpoint=ENDPOINT, access_key=ACCESS_KEY, rate=10.0)
    with pytest.raises(ConfigError, match=message) as raised:
        async with limiter:
            pass
    assert "s3cret" not in str(raised.value)
    assert ACCESS_KEY not in str(raised.value)


async def test_password_from_the_environment(own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """REDISCLI_AUTH is the password when the URL has none; env:NAME reads the whole URL from NAME."""
    admin = aioredis.Redis.from_url(own_redis_server.url)
    await admin.config_set("requirepass", "s3cret-pw")
    await admin.aclose()
    monkeypatch.setenv("REDISCLI_AUTH", "s3cret-pw")
    async with RedisLimiter(own_redis_server.url, endpoint=ENDPOINT, access_key=ACCESS_KEY, rate=10.0) as limiter:
        await limiter.acquire()
        assert "s3cret" not in repr(limiter)
    monkeypatch.delenv("REDISCLI_AUTH")
    monkeypatch.setenv("QUOTA_URL", f"redis://:s3cret-pw@127.0.0.1:{own_redis_server.port}/0")
    async with RedisLimiter("env:QUOTA_URL", endpoint=ENDPOINT, access_key=ACCESS_KEY, rate=10.0) as limiter:
        await limiter.acquire()
    with pytest.raises(ConfigError, match="MISSING_URL is not set"):
        RedisLimiter("env:MISSING_URL", endpoint=ENDPOINT, access_key=ACCESS_KEY)


# ------------------------------------------------------------------------------------------------ one policy
async def test_same_decisions_as_the_local_limiter(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """The Redis path and the local path run one policy: fed the same answers at the same times, they choose the
    same rate at every step (cuts on throttled rounds, recovery, probing back up to the told rate)."""
    local = LocalLimiter(100.0, burst=10, clock=fake_time.clock, sleep=fake_time.sleep)
    async with make_limiter(rate=100.0, burst=10) as shared:
        assert shared.rate == pytest.approx(local.rate)
        rates = []
        for n in range(600):
            throttled = (150 <= n < 250 and n % 4 == 0) or (400 <= n < 420 and n % 2 == 0)
            fake_time.now += 0.01
            ticket = fake_time.now - 0.004
            for limiter in (local, shared):
                if throttled:
                    limiter.on_throttle(ticket, None, {})
                else:
                    limiter.on_success(ticket, {})
            await shared.report()
            assert shared.rate == pytest.approx(local.rate, rel=1e-9), f"answer {n}"
            rates.append(shared.rate)
    lowest = min(r for r in rates if r is not None)
    assert lowest < 90  # the throttled rounds cut it, on both paths
    assert rates[-1] is not None
    assert rates[-1] > lowest  # and clean rounds climb back, on both paths


# ------------------------------------------------------------------------------------------------ runs after runs
class ServerQuota:
    """The server's own token bucket (GCRA) at ``rate`` requests/s with ``burst``, on the fake clock."""

    def __init__(self, fake_time: FakeTime, rate: float, burst: int) -> None:
        self._time = fake_time
        self._interval = 1 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0
        self.admitted = self.throttled = 0

    def admits(self) -> bool:
        now = self._time.now
        tat = max(self._tat, now)
        if tat - self._tolerance > now:
            self.throttled += 1
            return False
        self._tat = tat + self._interval
        self.admitted += 1
        return True


async def _run(limiter: RedisLimiter, fake_time: FakeTime, requests: int, server: ServerQuota | None) -> None:
    """One crawl: ``requests`` requests one after the other, 5 ms latency, answers reported every 10."""
    async with limiter:
        for n in range(requests):
            ticket = await limiter.acquire()
            fake_time.now += 0.005
            if server is None or server.admits():
                limiter.on_success(ticket, {})
            else:
                limiter.on_throttle(ticket, None, {})
            if n % 10 == 9:
                await limiter.report()


async def _stored_rate(redis_client: aioredis.Redis, key: str) -> float | None:
    state = await read_quota_state(redis_client, key, alive=5.0)
    assert state is not None
    return state.rate


async def test_told_runs_in_a_row_do_not_decay(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime, redis_client: aioredis.Redis
) -> None:
    """Five runs with one told rate: after an idle hour, after a tiny run, after a run that ends mid-round, the
    rate in force is still the told one; a raised told rate is in force from the first request of its run."""
    told = 100.0
    rates = []
    plan = [(200, 0.0, told), (3, 3600.0, told), (55, 0.0, told), (200, 600.0, told), (200, 0.0, 500.0)]
    for requests, idle, rate in plan:
        fake_time.now += idle
        limiter = make_limiter(rate=rate, burst=10)
        await _run(limiter, fake_time, requests, None)
        rates.append(await _stored_rate(redis_client, limiter.key))
    assert rates == pytest.approx([99.0, 99.0, 99.0, 99.0, 495.0])


async def test_lowered_told_rate_is_in_force_for_a_running_process(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """A process told a lower rate joins one told a higher: both go at the lower one from their next call."""
    async with make_limiter(rate=500.0) as fast:
        await fast.acquire()
        async with make_limiter(rate=50.0) as slow:
            assert slow.rate == pytest.approx(49.5)
            await fast.report()
            assert fast.rate == pytest.approx(49.5)


async def test_discovering_runs_in_a_row_do_not_decay(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime, redis_client: aioredis.Redis
) -> None:
    """Three discovering runs against a server quota of 80/s, with idle gaps: each starts from the rate the last
    one found, and none ends lower than 80% of the quota."""
    server = ServerQuota(fake_time, 80.0, 5)
    rates = []
    for _ in range(3):
        fake_time.now += 120.0
        limiter = make_limiter(burst=5)
        await _run(limiter, fake_time, 800, server)
        rates.append(await _stored_rate(redis_client, limiter.key))
    assert all(rate is not None and rate >= 0.8 * 80 for rate in rates), rates
    assert server.throttled <= 0.05 * (server.admitted + server.throttled)


async def test_an_idle_gap_inside_a_run_is_not_a_slow_rate(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """A process idle for a minute mid-round, then mostly throttled: the round restarts after the gap, so the cut
    is measured on the answers after it (about 100/s, a sixth admitted), not spread over the minute."""
    async with make_limiter(rate=100.0, burst=10) as limiter:
        for n in range(10):  # one throttle before the gap: the round is judged from it on
            await _answer(limiter, fake_time, throttled=n == 5)
        await limiter.report()
        fake_time.now += 60.0
        for n in range(30):
            await _answer(limiter, fake_time, throttled=n % 6 != 0)
        await limiter.report()
        assert limiter.rate is not None
        assert 10.0 < limiter.rate < 30.0  # a sixth of ~100/s admitted
