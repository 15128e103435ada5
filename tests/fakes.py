"""Test doubles shared by several test modules.

:class:`FakeTransport` stands in for the network at the public seam (:class:`snapcrawl.Transport`): a handler
function answers each request, and every request is recorded. With :class:`FakeClock` as the crawler's clock and
sleep, a crawl is deterministic and costs no real time. ``page_body`` and ``snapshot`` build the API's JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import anyio
from aioresponses import aioresponses

from snapcrawl import Response

__all__ = [
    "Aioresponses",
    "FakeClock",
    "FakeTransport",
    "Handler",
    "SentRequest",
    "ok",
    "page_body",
    "query_of",
    "snapshot",
]

#: Answers one request: ``(url, headers) -> Response`` (or an awaitable of one); may raise ``TransportError``.
Handler = Callable[[str, dict[str, str]], "Response | Awaitable[Response]"]


class SentRequest(NamedTuple):
    """One request as the transport received it: the exact URL and headers, and its query parsed."""

    url: str
    headers: dict[str, str]

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, decoded."""
        return query_of(self.url)


class FakeTransport:
    """A :class:`snapcrawl.Transport` whose answers come from ``handler``; it records every request in ``requests``.

    The handler sees the URL exactly as it would go on the wire; it may raise (a ``TransportError`` for a
    connection that failed) or be a coroutine function (to wait on an event, for instance).
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[SentRequest] = []
        self.closed = False

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """Record the request, then answer it with the handler."""
        self.requests.append(SentRequest(url, dict(headers)))
        answer = self.handler(url, headers)
        if inspect.isawaitable(answer):
            answer = await answer
        await anyio.lowlevel.checkpoint()  # a real transport always yields to the loop at least once
        return answer

    async def aclose(self) -> None:
        """Remember that the crawler closed its transport."""
        self.closed = True


def query_of(url: str) -> dict[str, str]:
    """The decoded query parameters of ``url`` (the last value of a repeated one)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def snapshot(number: int, volume_id: str = "vol-1", **fields: Any) -> dict[str, Any]:
    """A valid snapshot in the API's JSON shape; ``fields`` override or add fields."""
    return {
        "id": f"{volume_id}-snap-{number:05d}",
        "volume_id": volume_id,
        "size": 8 + number,
        "created_at": "2025-07-22T09:00:00Z",
    } | fields


def page_body(snapshots: list[dict[str, Any]], count: int | None = None, **extra: Any) -> bytes:
    """A page of ``GET /v1/snapshots`` as bytes."""
    return json.dumps({"count": count, "snapshots": snapshots} | extra).encode()


def ok(body: bytes, headers: Mapping[str, str] | None = None) -> Response:
    """A 200 answer carrying ``body``."""
    return Response(200, body, headers=dict(headers or {}))


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
