"""The seam between the page fetcher and whatever paces it: a local limiter, or one shared through Redis.

The fetcher calls, for every attempt: ``await acquire()`` (skipped while ``active`` is false), sends, then
exactly one of ``on_success`` / ``on_throttle`` with the ticket ``acquire`` returned. ``on_throttle`` answers
how long *this* request waits before it is sent again; whether every other request waits too is the limiter's
own policy (a long ``Retry-After`` pauses them all; a whole-second one from a token bucket need not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["Limiter"]


class Limiter(Protocol):
    """Paces requests and adapts to the server's answers. Every method but ``acquire`` is cheap and sync."""

    #: Whether requests must call :meth:`acquire`; while false the fetcher skips it (no cap, no throttle yet).
    active: bool

    @property
    def rate(self) -> float | None:
        """The rate in force, in requests per second, or ``None`` for no cap."""
        ...

    async def acquire(self) -> float:
        """Wait until one request may be sent; return a ticket (the monotonic time it was granted).

        A caller cancelled while waiting gives its reservation back.
        """
        ...

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        """Feed back an answer that was not a throttle, with its headers (rate-limit fields may be there)."""
        ...

    def on_throttle(self, ticket: float, retry_after: float | None, headers: Mapping[str, str]) -> float:
        """Feed back a throttle (429, or 503 with ``Retry-After``); return the seconds before this request's retry.

        ``retry_after`` is already in seconds from now on the server's (corrected) clock, or ``None``.
        """
        ...
