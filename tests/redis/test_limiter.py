"""The Redis-shared limiter: one GCRA bucket and one adaptive rate for every process, failing open when Redis goes."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from snapcrawl._exceptions import ConfigError
from snapcrawl.limits import Limiter
from snapcrawl.limits.redis import RedisLimiter, quota_key

from .conftest import RedisServer

ACCESS_KEY = "AKIA-very-secret-access-key"
ENDPOINT = "http://127.0.0.1:9"


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
    redis_server: RedisServer, redis_client: aioredis.Redis, fake_time: FakeTime
) -> Callable[..., RedisLimiter]:
    """Limiters on the shared (flushed) server, one per simulated process, on the fake clock."""

    def make(**kwargs: object) -> RedisLimiter:
        settings: dict[str, object] = {"endpoint": ENDPOINT, "access_key": ACCESS_KEY, "burst": 3}
        settings.update(kwargs)
        return RedisLimiter(
            redis_server.url,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
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
        # Redis's clock decides: about one emission interval (1 / 0.99 s) minus the real time the calls took.
        assert 0.0 < fake_time.slept <= 1.02
        assert first.rate == second.rate == pytest.approx(0.99)


async def test_cancelled_waiter_gives_its_slot_back(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """A request cancelled while waiting returns its slot: the next one waits one interval, not two."""
    async with two(make_limiter) as (first, second):
        for _ in range(3):
            await first.acquire()
        with anyio.move_on_after(0):  # cancelled at its first nap
            await second.acquire()
        before = fake_time.slept
        await second.acquire()  # carries the slot given back
        assert 0.0 < fake_time.slept - before <= 1.02


async def test_first_throttle_caps_every_process(make_limiter: Callable[..., RedisLimiter]) -> None:
    """Discovering (no rate): the first throttle anywhere gives every process one rate, from the answers so far."""
    async with make_limiter() as first, make_limiter() as second:
        for _ in range(20):
            first.on_success(await first.acquire(), {})
        await second.acquire()
        assert (first.rate, second.rate) == (None, None)  # compared whole: mypy must not narrow the property
        assert first.on_throttle(await first.acquire(), None, {}) == 0.0
        await first.acquire()  # carries the report
        rate = first.rate
        assert rate is not None
        await second.acquire()
        assert second.rate == rate


async def test_throttled_round_slows_every_process(make_limiter: Callable[..., RedisLimiter]) -> None:
    """Told 100/s, a round of answers a third throttled cuts the one shared rate: the other process slows too."""
    async with make_limiter(rate=100.0, burst=50) as first, make_limiter(rate=100.0, burst=50) as second:
        for n in range(30):
            ticket = await first.acquire()
            if n % 3:
                first.on_success(ticket, {})
            else:
                first.on_throttle(ticket, None, {})
        await anyio.sleep(0.3)  # a round lasts at least 0.2 s of Redis time
        await first.acquire()
        await second.acquire()
        assert second.rate is not None
        assert second.rate < 99 * 0.95
        assert second.rate == first.rate


async def test_throttle_report_does_not_wait_for_a_request(make_limiter: Callable[..., RedisLimiter]) -> None:
    """A throttle is reported in the background when no request of the process comes to carry it."""
    async with make_limiter(heartbeat=30.0) as first, make_limiter(heartbeat=30.0) as second:
        for _ in range(5):
            first.on_success(await first.acquire(), {})
        first.on_throttle(await first.acquire(), None, {})
        for _ in range(1000):
            await second.acquire()
            if second.rate is not None:
                break
            await anyio.sleep(0.01)
        assert second.rate is not None


async def test_long_retry_after_pauses_every_process(
    make_limiter: Callable[..., RedisLimiter], fake_time: FakeTime
) -> None:
    """A long Retry-After seen by one process holds back the others; a short one only the throttled request."""
    async with two(make_limiter) as (first, second):
        assert first.on_throttle(await first.acquire(), 2.0, {}) == 2.0
        await first.acquire()  # carries the report
        before = fake_time.slept
        await second.acquire()
        assert fake_time.slept - before < 1.0
        assert first.on_throttle(await first.acquire(), 5.0, {}) == 5.0
        await first.acquire()
        before = fake_time.slept
        await second.acquire()
        assert fake_time.slept - before > 3.0


async def test_concurrent_callers_share_a_call(make_limiter: Callable[..., RedisLimiter]) -> None:
    """Callers that acquire at the same moment share script calls: fewer round trips than requests."""
    async with make_limiter(rate=1e6, burst=1000) as limiter:
        calls_before = limiter.stats.redis_calls
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(limiter.acquire)
        assert limiter.stats.granted_shared == 50
        assert limiter.stats.redis_calls - calls_before < 50


async def test_reloads_script_after_noscript(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """EVALSHA answered NOSCRIPT (the script cache was flushed) loads the script again and goes on."""
    async with make_limiter(rate=100.0) as limiter:
        await limiter.acquire()
        await redis_client.script_flush()
        await limiter.acquire()
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
            for _ in range(20):
                await first.acquire()
            assert not first.shared
            assert first.rate == pytest.approx(400 * 0.99 / 2 * RedisLimiter.FALLBACK_SHARE)
            assert first.stats.granted_local >= 19
            own_redis_server.start()
            await eventually(lambda: first.shared)
            await first.acquire()
            assert first.stats.reconnects == 1
    warnings = [log for log in logs if log["log_level"] == "warning"]
    assert [log["event"] for log in warnings].count("limiter.redis_unavailable") <= 2  # once per limiter
    assert all(ACCESS_KEY not in str(log) for log in logs)


async def test_unreachable_from_the_start_runs_locally() -> None:
    """No Redis at all: the limiter still grants requests, locally, at the configured rate."""
    limiter = RedisLimiter(
        "redis://127.0.0.1:1/0", endpoint=ENDPOINT, access_key=ACCESS_KEY, rate=50.0, burst=2, heartbeat=30.0
    )
    async with limiter:
        assert not limiter.shared
        ticket = await limiter.acquire()
        assert math.isfinite(ticket)
        assert limiter.rate == pytest.approx(50 * 0.99 * RedisLimiter.FALLBACK_SHARE)
        assert limiter.on_throttle(ticket, 1.5, {}) == 1.5


async def test_refused_script_fails_open(
    make_limiter: Callable[..., RedisLimiter], redis_client: aioredis.Redis
) -> None:
    """A Redis that refuses the script (here: the key holds another type) makes the limiter pace locally."""
    limiter = make_limiter(rate=10.0)
    await redis_client.set(limiter.key, "not a hash")
    with capture_logs() as logs:
        async with limiter:
            await limiter.acquire()
            assert not limiter.shared
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == ["limiter.redis_unavailable"]
