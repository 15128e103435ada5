"""The load models: a drift-free open-loop schedule, the in-flight cap, the drain, and the closed loop."""

from __future__ import annotations

import time

import anyio
import pytest

from snapcrawl.bench._ramp import Profile
from snapcrawl.bench._schedule import Slots, closed_loop, open_loop


class Sends:
    """Records what the scheduler asked for; each send waits on ``gate`` if one is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, bool]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0
        self.gate: anyio.Event | None = None
        self.start: float | None = None

    def on_start(self, start: float) -> None:
        self.start = start

    async def __call__(self, intended: float, ready: float, held_back: bool) -> None:
        self.calls.append((intended, ready, held_back))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


async def test_open_loop_sends_on_a_schedule_computed_from_the_start() -> None:
    """Request i is due at start + i/R exactly, so the schedule cannot drift however late the sends are."""
    sends = Sends()
    await open_loop(sends, times=Profile.constant(2000.0, 0.1).times(), max_in_flight=1000, on_start=sends.on_start)
    assert len(sends.calls) == 200
    assert sends.start is not None
    for i, (intended, ready, held_back) in enumerate(sends.calls):
        assert intended == pytest.approx(sends.start + i / 2000.0, abs=1e-9)
        assert ready == intended
        assert not held_back


async def test_send_never_goes_before_its_intended_time() -> None:
    """The scheduler spins for the last stretch instead of sending early."""
    seen: list[tuple[float, float]] = []

    async def send(intended: float, ready: float, held_back: bool) -> None:
        seen.append((intended, time.monotonic()))

    await open_loop(send, times=Profile.constant(500.0, 0.05).times(), max_in_flight=10)
    assert len(seen) == 25
    assert all(actual >= intended for intended, actual in seen)


async def test_cap_holds_sends_back_but_keeps_their_intended_times() -> None:
    """With two slots taken by requests that do not finish, the third waits, and still counts from its due time."""
    sends = Sends()
    sends.gate = anyio.Event()
    rate = 1000.0

    async def release_after_third_is_due() -> None:
        while sends.start is None:  # the scheduler starts in this same task group, at once
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(max(0.0, sends.start + 3 / rate - time.monotonic()) + 0.001)
        assert sends.gate is not None
        sends.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release_after_third_is_due)
        await open_loop(sends, times=Profile.constant(rate, 0.01).times(), max_in_flight=2, on_start=sends.on_start)
    assert sends.start is not None
    assert len(sends.calls) == 10
    assert sends.most_in_flight == 2
    intended, ready, held_back = sends.calls[2]
    assert held_back
    assert ready > intended
    for i, (intended, _, _) in enumerate(sends.calls):
        assert intended == pytest.approx(sends.start + i / rate, abs=1e-9)


async def test_drain_cancels_requests_that_outlive_it() -> None:
    """With a drain, requests still in flight after it are cancelled and the loop returns."""
    sends = Sends()
    sends.gate = anyio.Event()  # never set: no request ends on its own
    await open_loop(sends, times=Profile.constant(1000.0, 0.005).times(), max_in_flight=100, drain=0.01)
    assert len(sends.calls) == 5
    assert sends.cancelled == 5


async def test_slots_wake_the_waiter_when_one_is_given_back() -> None:
    """A full set of slots makes take() wait until give() frees one; idle() waits for all."""
    slots = Slots(1)
    await slots.take()
    order: list[str] = []

    async def second() -> None:
        await slots.take()
        order.append("took")
        slots.give()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.lowlevel.checkpoint()
        assert order == []
        order.append("give")
        slots.give()
        await slots.idle()
    assert order == ["give", "took"]
    assert slots.used == 0


async def test_closed_loop_keeps_exactly_n_in_flight() -> None:
    """N workers each send as soon as their last request ended; intended time equals send time."""
    sends = Sends()
    await closed_loop(sends, concurrency=3, duration=0.02)
    assert sends.most_in_flight == 3
    assert len(sends.calls) >= 3
    assert all(intended == ready and not held for intended, ready, held in sends.calls)
