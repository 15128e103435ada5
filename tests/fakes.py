"""Test doubles shared by several test modules."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
from aioresponses import aioresponses


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it; sleeping costs no real time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and yield to the event loop once."""
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


class _SentRequest:
    """Stands for aiohttp's stream writer of a request that has been sent in full."""

    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.x builds responses without the ``stream_writer`` that aiohttp 3.14 requires."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentRequest())
        super().__init__(*args, **kwargs)


class Aioresponses(aioresponses):
    """aioresponses whose canned answers work with aiohttp 3.14 (upstream issue pnuckowski/aioresponses#289)."""

    def add(self, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", CompatResponse)
        super().add(url, method, *args, **kwargs)
