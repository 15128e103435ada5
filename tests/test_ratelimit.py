"""The token bucket and its adaptation, on a fake clock: no real sleeping."""

from __future__ import annotations

import logging
import math

import anyio
import anyio.lowlevel
import pytest
import structlog

from snapcrawl._ratelimit import AdaptiveRateLimiter, CubicRate, RateMeter, TokenBucket
from tests.fakes import FakeClock


def _max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_bucket_allows_burst_then_rate() -> None:
    """The first `burst` acquisitions pass at once, the rest one every 1/rate seconds."""
    clock = FakeClock()
    bucket = TokenBucket(100.0, burst=10, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(1010):
        await bucket.acquire()
        times.append(clock.now)
    assert times[9] == times[0]
    assert times[10] == pytest.approx(times[0] + 0.01)
    assert times[-1] - times[0] == pytest.approx(10.0)
    assert _max_in_window(times, 1.0) <= 100 + 10


async def test_bucket_refills_while_idle() -> None:
    """After an idle spell a full burst is available again, but never more."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await bucket.acquire()
    clock.now += 60
    start = clock.now
    for _ in range(6):
        await bucket.acquire()
    assert clock.now == pytest.approx(start + 0.1)


async def test_unlimited_bucket_never_waits() -> None:
    """With no rate there is no waiting at all."""
    clock = FakeClock()
    bucket = TokenBucket(None, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        await bucket.acquire()
    assert clock.sleeps == []


async def test_pause_until_holds_every_request() -> None:
    """A Retry-After pause delays the next request until it has passed, then resumes at the steady rate."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=5, clock=clock, sleep=clock.sleep)
    bucket.pause_until(clock.now + 2.0)
    start = clock.now
    await bucket.acquire()
    assert clock.now == pytest.approx(start + 2.0)
    await bucket.acquire()
    assert clock.now == pytest.approx(start + 2.1)


async def test_unlimited_bucket_honours_pause() -> None:
    """Even without a rate, a pause is honoured."""
    clock = FakeClock()
    bucket = TokenBucket(None, clock=clock, sleep=clock.sleep)
    bucket.pause_until(clock.now + 1.5)
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(1.5)]


def test_bucket_rejects_bad_settings() -> None:
    """Zero burst or a non-positive rate is refused."""
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, burst=0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(-1.0)


def test_rate_meter_measures_steady_rate() -> None:
    """A steady 200 responses/s is measured as about 200/s."""
    meter = RateMeter()
    rate = 0.0
    for i in range(1, 2001):
        rate = meter.record(i / 200)
    assert rate == pytest.approx(200, rel=0.05)


def test_cubic_drops_then_recovers() -> None:
    """CUBIC drops to beta times the rate, is back at the old rate after K seconds, and probes beyond."""
    cubic = CubicRate(0.0, 0.0)
    assert cubic.throttled(100.0, 10.0) == pytest.approx(70.0)
    k = (100 * 0.3 / 0.4) ** (1 / 3)
    assert cubic.success(10.0) == pytest.approx(70.0)
    assert cubic.success(10.0 + k) == pytest.approx(100.0)
    assert cubic.success(10.0 + 2 * k) > 100.0


def test_adaptive_engages_on_first_throttle_and_probes_up() -> None:
    """An uncapped limiter gets a rate on its first throttle, then raises it while nothing is throttled."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(400):  # 400 responses/s for 1 s
        clock.now += 0.0025
        limiter.on_success()
    assert limiter.rate is None
    limiter.on_throttle(sent_at=clock.now)
    dropped = limiter.rate
    assert dropped is not None and 200 < dropped < 400
    for _ in range(2000):
        clock.now += 1 / dropped
        limiter.on_success()
    assert limiter.rate is not None and limiter.rate > dropped


def test_adaptive_respects_user_cap() -> None:
    """Adaptation never raises the rate above the configured rate_limit."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(50.0, clock=clock, sleep=clock.sleep)
    limiter.on_throttle(sent_at=clock.now)
    for _ in range(5000):
        clock.now += 0.01
        limiter.on_success()
    assert limiter.rate is not None and 50.0 * 0.95 <= limiter.rate <= 50.0 * (1 - limiter.JITTER_MARGIN)


async def test_adaptive_retry_after_pauses() -> None:
    """A throttle with Retry-After pauses the next acquisition for that long."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(None, clock=clock, sleep=clock.sleep)
    limiter.on_throttle(sent_at=clock.now, retry_after=3.0)
    await limiter.acquire()
    assert clock.now >= 3.0


def test_one_cut_per_congestion_event() -> None:
    """Throttles of requests sent before the last cut do not cut the rate again."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(300):
        clock.now += 0.0025
        limiter.on_success()
    sent_together = clock.now
    clock.now += 0.01
    limiter.on_throttle(sent_at=sent_together)
    after_first = limiter.rate
    for _ in range(63):  # the rest of the requests that were in flight with it
        limiter.on_throttle(sent_at=sent_together)
    assert limiter.rate == after_first
    clock.now += 0.5
    limiter.on_throttle(sent_at=clock.now - 0.01)  # sent after the cut: a new congestion event
    assert limiter.rate is not None and after_first is not None and limiter.rate < after_first


async def test_rate_change_reaches_waiters() -> None:
    """Callers already waiting on slots reserved at a low rate move up when the rate rises."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=1, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    start = clock.now

    async def raise_rate_soon() -> None:
        await anyio.lowlevel.checkpoint()
        bucket.rate = 1000.0

    async with anyio.create_task_group() as tg:
        tg.start_soon(raise_rate_soon)
        for _ in range(5):
            await bucket.acquire()
    assert clock.now - start < 0.5


def test_requests_sent_before_adapting_do_not_cascade() -> None:
    """Throttles of requests sent while the limiter was idle count as one congestion event."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(None, clock=clock, sleep=clock.sleep)
    assert not limiter.active
    for _ in range(500):
        clock.now += 0.002
        limiter.on_success()
    for _ in range(64):  # everything that was in flight comes back 429
        limiter.on_throttle(sent_at=-math.inf, retry_after=1.0)
    assert limiter.active
    assert limiter.rate == pytest.approx(0.7 * 500, rel=0.05)


async def test_schedule_never_runs_away() -> None:
    """However often the rate is cut, the next free slot is at most one empty bucket away."""
    clock = FakeClock(0.0)
    bucket = TokenBucket(1000.0, burst=10, clock=clock, sleep=clock.sleep)
    for rate in (700.0, 490.0, 343.0, 10.0, 0.5):
        for _ in range(15):
            await bucket.acquire()
        bucket.pause_until(clock.now + 1.0)
        bucket._tat += 5.0  # slots reserved by callers that were cancelled while they waited
        bucket.rate = rate
    start = clock.now
    await bucket.acquire()
    assert clock.now - start <= 1.0 + 9 / 0.5 + 2.0


def test_rate_changes_are_logged() -> None:
    """A cut is logged at once; the climb back is logged in steps of a quarter, not on every answer."""
    clock = FakeClock(0.0)
    limiter = AdaptiveRateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(200):
        clock.now += 0.005
        limiter.on_success()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    with structlog.testing.capture_logs() as logs:
        limiter.on_throttle(sent_at=clock.now)
        for _ in range(3000):
            clock.now += 0.005
            limiter.on_success()
    events = [entry["event"] for entry in logs]
    assert events[0] == "rate.decreased"
    assert 1 <= events.count("rate.increased") <= 20
