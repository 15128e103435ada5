"""A crawler-wide budget of response bytes held at once, so memory stays bounded whatever the concurrency.

Each body is capped on its own (32 MiB by default), but 64 requests in flight could each hold one: 2 GiB from a
hostile server sending 30 MiB pages. Readers reserve bytes before they hold them (the whole body when its length
is announced, else chunk by chunk as it inflates) and give them back when the body has been decoded. A reader
that would pass the budget waits, except the oldest one reading: it always goes on, so readers holding part of
the budget can never wait on each other forever. Bytes held at once: at most the budget plus one body.
"""

from __future__ import annotations

from typing import Final

import anyio

__all__ = ["DEFAULT_MAX_BYTES_IN_FLIGHT", "ByteBudget", "Reservation"]

#: Four bodies at the default per-body cap.
DEFAULT_MAX_BYTES_IN_FLIGHT: Final = 128 * 1024 * 1024


class ByteBudget:
    """At most ``limit`` bytes reserved at once (plus the oldest reader's); see the module docstring."""

    __slots__ = ("_changed", "_readers", "limit", "peak", "used")

    def __init__(self, limit: int = DEFAULT_MAX_BYTES_IN_FLIGHT) -> None:
        if limit < 1:
            raise ValueError(f"the byte budget must be >= 1, not {limit}")
        self.limit = limit
        self.used = 0
        #: The most bytes ever reserved at once.
        self.peak = 0
        self._readers: dict[Reservation, None] = {}  # in order of arrival: the first is the oldest
        self._changed: anyio.Event | None = None  # made when a reader first waits (an Event needs a running loop)

    def reservation(self) -> Reservation:
        """A new reader's share, to be used as ``with budget.reservation() as held: await held.take(n)``."""
        return Reservation(self)

    def _fits(self, reservation: Reservation, size: int) -> bool:
        return self.used + size <= self.limit or next(iter(self._readers)) is reservation

    def _released(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


class Reservation:
    """One reader's bytes of a :class:`ByteBudget`, all given back when the ``with`` block ends."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    def __enter__(self) -> Reservation:
        self._budget._readers[self] = None
        return self

    def __exit__(self, *exc_info: object) -> None:
        budget = self._budget
        del budget._readers[self]
        budget.used -= self.held
        self.held = 0
        budget._released()

    async def take(self, size: int) -> None:
        """Reserve ``size`` more bytes, waiting while they would pass the budget (unless this is the oldest)."""
        budget = self._budget
        while not self.try_take(size):
            if budget._changed is None:
                budget._changed = anyio.Event()
            await budget._changed.wait()

    def try_take(self, size: int) -> bool:
        """Reserve ``size`` more bytes if that needs no wait (:meth:`take` without a coroutine); whether it did."""
        budget = self._budget
        if not budget._fits(self, size):
            return False
        budget.used += size
        self.held += size
        budget.peak = max(budget.peak, budget.used)
        return True
