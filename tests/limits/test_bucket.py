"""The GCRA token bucket on a fake clock: bursts, pacing, pauses, rate changes and cancelled waiters."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from snapcrawl.limits.local import TokenBucket
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
    """A pause delays the next request until it has passed, then resumes at the steady rate."""
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


async def test_small_rate_change_keeps_the_next_slot() -> None:
    """A change without requeueing neither pulls the next slot earlier nor pushes it later."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        await bucket.acquire()
    start = clock.now
    bucket.set_rate(10.5, requeue=False)
    await bucket.acquire()
    assert clock.now - start == pytest.approx(0.1)


async def test_rate_change_keeps_a_granted_slot() -> None:
    """Requeueing at a new rate still counts the request granted just before: no two go out together."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=1, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    start = clock.now
    bucket.rate = 20.0
    await bucket.acquire()
    assert clock.now - start == pytest.approx(0.05)


async def test_schedule_never_runs_away() -> None:
    """However often the rate is cut, the next free slot is at most one empty bucket away."""
    clock = FakeClock(0.0)
    bucket = TokenBucket(1000.0, burst=10, clock=clock, sleep=clock.sleep)
    for rate in (700.0, 490.0, 343.0, 10.0, 0.5):
        for _ in range(15):
            await bucket.acquire()
        bucket.pause_until(clock.now + 1.0)
        bucket.rate = rate
    start = clock.now
    await bucket.acquire()
    assert clock.now - start <= 1.0 + 9 / 0.5 + 2.0


class _BlockingSleep:
    """A sleep that never ends by itself: waiters stay parked on their slots until they are cancelled."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, seconds: float) -> None:
        self.calls += 1
        await anyio.sleep_forever()


async def _abandon(bucket: TokenBucket, waiters: int) -> None:
    """Start ``waiters`` acquisitions, let them reserve their slots, then cancel them all (an abandoned crawl)."""
    async with anyio.create_task_group() as tg:
        for _ in range(waiters):
            tg.start_soon(bucket.acquire)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("waiters", [1, 64])
async def test_cancelled_waiters_release_their_slots(waiters: int) -> None:
    """After five abandoned crawls, a fresh acquire one interval later goes at once instead of queueing."""
    clock = FakeClock()
    sleep = _BlockingSleep()
    bucket = TokenBucket(20.0, burst=1, clock=clock, sleep=sleep)
    await bucket.acquire()
    for _ in range(5):
        await _abandon(bucket, waiters)
    assert sleep.calls == 5 * waiters  # every one of them did wait on a reserved slot
    clock.now += 1 / 20.0
    with anyio.fail_after(5):
        await bucket.acquire()
    assert sleep.calls == 5 * waiters
