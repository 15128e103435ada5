"""Load models: an open loop on a fixed schedule (wrk2, k6's constant-arrival-rate) and a closed loop.

The open loop's request ``i`` is due at ``start + times[i]`` (see :class:`~._ramp.Profile`), computed from the
start, never by adding up sleeps,
so the schedule cannot drift and a slow server cannot slow it down. A send held back by the in-flight cap goes as
soon as a slot frees, and keeps its intended time. The event loop's timers fire up to a millisecond late (epoll
and libuv round to milliseconds), so the scheduler sleeps until about 1.5 ms before a send and yields in a loop
for the rest: its own lag stays far below a millisecond, at the price of a busy core at high rates.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

import anyio
import anyio.lowlevel

__all__ = ["SPIN_SECONDS", "Send", "Slots", "closed_loop", "open_loop"]

#: How long before a due time the scheduler stops sleeping on a timer and starts yielding in a loop.
SPIN_SECONDS: Final = 0.0015
#: Sends the scheduler makes back to back (catching up) before it lets the event loop run once.
_BURST: Final = 16


class Send(Protocol):
    """Makes one request and records it; ``ready`` is when it could go, ``held_back`` by the in-flight cap."""

    def __call__(self, intended: float, ready: float, held_back: bool) -> Awaitable[None]: ...


class Slots:
    """Counts requests in flight against a cap; only the scheduler waits for a free slot."""

    __slots__ = ("_changed", "cap", "used")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self._changed: anyio.Event | None = None

    async def take(self) -> None:
        """Wait for a free slot and take it."""
        while self.used >= self.cap:
            await self._wait()
        self.used += 1

    def give(self) -> None:
        """Give a slot back."""
        self.used -= 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def idle(self) -> None:
        """Wait until nothing is in flight."""
        while self.used:
            await self._wait()

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()


async def open_loop(
    send: Send,
    *,
    times: Iterable[float],
    max_in_flight: int,
    drain: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_start: Callable[[float], None] | None = None,
    start: float | None = None,
) -> None:
    """Send a request at ``start + t`` for each ``t`` of ``times`` (ascending), however the server answers.

    Returns once every request has ended; with ``drain``, requests still in flight that long after the last send
    are cancelled (``send`` records them). ``on_start`` gets the schedule's zero before the first send: ``start``
    (a ``clock()`` time agreed with other workers, so that a late start counts as lag) or now.
    """
    slots = Slots(max_in_flight)

    async def one(intended: float, ready: float, held_back: bool) -> None:
        try:
            await send(intended, ready, held_back)
        finally:
            slots.give()

    async with anyio.create_task_group() as tg:
        start = clock() if start is None else start
        if on_start is not None:
            on_start(start)
        back_to_back = 0
        for offset in times:
            due = start + offset
            if (delay := due - clock()) > SPIN_SECONDS:
                await anyio.sleep(delay - SPIN_SECONDS)
            if clock() < due:
                back_to_back = 0
                while clock() < due:
                    await anyio.lowlevel.checkpoint()
            elif (back_to_back := back_to_back + 1) >= _BURST:  # catching up: let answers in now and then
                back_to_back = 0
                await anyio.lowlevel.checkpoint()
            if slots.used < slots.cap:
                slots.used += 1
                tg.start_soon(one, due, due, False)
            else:
                await slots.take()
                tg.start_soon(one, due, clock(), True)
        if drain is not None:
            with anyio.move_on_after(drain):
                await slots.idle()
            tg.cancel_scope.cancel()


async def closed_loop(
    send: Send,
    *,
    concurrency: int,
    duration: float,
    clock: Callable[[], float] = time.monotonic,
    on_start: Callable[[float], None] | None = None,
) -> None:
    """Run ``concurrency`` workers, each sending its next request as soon as its last one ended, for ``duration``.

    A closed loop has no schedule: each request's intended time is its send time, so its latencies cannot show
    how long users would have waited while the server stalled (coordinated omission). Use it to find throughput.
    """

    async def worker(end: float) -> None:
        while (now := clock()) < end:
            await send(now, now, False)

    async with anyio.create_task_group() as tg:
        start = clock()
        if on_start is not None:
            on_start(start)
        for _ in range(concurrency):
            tg.start_soon(worker, start + duration)
