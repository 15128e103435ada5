"""Test doubles shared by several test modules.

:class:`FakeTransport` stands in for the network at the public seam (:class:`snapcrawl.Transport`): a handler
function answers each request, and every request is recorded. With :class:`FakeClock` as the crawler's clock and
sleep, a crawl is deterministic and costs no real time. ``page_body`` and ``snapshot`` build the API's JSON.
:class:`PageServer` is a real HTTP(S) server on loopback for what needs the real transport or the CLI: fixed
snapshots, failures chosen per query, every query recorded; no signature check (the simulator does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import anyio
from aiohttp import web
from aioresponses import aioresponses

from snapcrawl import Page
from snapcrawl.limits import LocalLimiter
from snapcrawl.sinks import VolumeProgress
from snapcrawl.transport import Response

__all__ = [
    "Aioresponses",
    "FakeClock",
    "FakeTransport",
    "Handler",
    "PageServer",
    "RecordingSink",
    "SentRequest",
    "ok",
    "page_body",
    "query_of",
    "serve_in_thread",
    "snapshot",
    "unpace",
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


class PageServer:
    """``GET /v1/snapshots`` over fixed snapshots: ``volumes`` maps volume id -> number of snapshots.

    Marker and offset paging, ``count`` when ``with_count=true``, the whole account without ``volume_id``.
    ``fail(query)`` returns a status to answer instead (or ``None``); ``stall`` delays every answer (seconds).
    Every decoded query lands in ``queries``. Signatures are not checked.
    """

    def __init__(self, volumes: Mapping[str, int], *, stall: float = 0.0) -> None:
        self.volumes: dict[str | None, list[dict[str, Any]]] = {
            volume_id: [snapshot(n, volume_id) for n in range(1, count + 1)] for volume_id, count in volumes.items()
        }
        self.volumes[None] = [snap for snaps in list(self.volumes.values()) for snap in snaps]
        self.stall = stall
        self.fail: Callable[[dict[str, str]], int | None] = lambda query: None
        self.queries: list[dict[str, str]] = []

    def ids(self, volume_id: str | None = None) -> list[str]:
        """The snapshot ids of a volume (of the account for ``None``), in listing order."""
        return [snap["id"] for snap in self.volumes[volume_id]]

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one request."""
        query = dict(request.query)
        self.queries.append(query)
        if self.stall:
            await asyncio.sleep(self.stall)
        if (status := self.fail(query)) is not None:
            body = {"errors": [{"code": "Injected", "detail": f"injected {status}", "status": status}]}
            return web.Response(status=status, body=json.dumps(body), content_type="application/json")
        items = self.volumes.get(query.get("volume_id"), [])
        start = int(query.get("offset", 0))
        if (marker := query.get("marker")) is not None:
            start += next(i for i, snap in enumerate(items) if snap["id"] == marker) + 1
        count = len(items) if query.get("with_count") == "true" else None
        page = items[start : start + int(query.get("limit", 20))]
        return web.Response(body=page_body(page, count), content_type="application/json")


@contextlib.contextmanager
def serve_in_thread(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], *, ssl_context: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``handler`` for every path on a free loopback port from its own thread; yield the base URL."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="page-server", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the test server did not start")
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


class RecordingSink:
    """A :class:`snapcrawl.sinks.Sink` that keeps every page and failure in memory (no resume: no progress).

    Also callable with a page, so it serves ``crawl_into`` whether that takes a callable or a ``Sink``.
    """

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self.failed: list[tuple[str | None, str]] = []
        self.flushes = 0
        self.completed = False
        self.closed = False

    def __call__(self, page: Page) -> None:
        self.pages.append(page)

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """Nothing was committed before: every volume starts from its first page."""
        return {}

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """The ids of ``volume_id`` taken so far."""
        return {snap.id for page in self.pages if page.volume_id == volume_id for snap in page.snapshots}

    async def write(self, page: Page) -> None:
        """Keep the page."""
        self.pages.append(page)

    async def fail(self, volume_id: str | None, error: str) -> None:
        """Keep the failure."""
        self.failed.append((volume_id, error))

    async def flush(self) -> None:
        """Count the flush."""
        self.flushes += 1

    async def complete(self) -> None:
        """Remember that the crawl ran to its end."""
        self.completed = True

    async def aclose(self) -> None:
        """Remember that the sink was closed."""
        self.closed = True


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


_Local = TypeVar("_Local", bound=LocalLimiter)


def unpace(limiter: _Local, clock: FakeClock) -> _Local:
    """Feed ``limiter`` answers at 20/s, a fifth of its first rate, until its start's climb outruns them and it
    stops pacing, as in a crawl that no quota limits; it, unpaced."""
    for _ in range(100):
        if not limiter.active:
            return limiter
        ticket = clock.now
        clock.now += 0.05
        limiter.on_success(ticket, {})
    raise AssertionError(f"still paced at {limiter.rate} req/s")


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
