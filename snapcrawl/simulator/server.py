"""The aiohttp server: one request's path from arrival to answer.

::

    arrive (stats, plan clock) -> wait out a pause -> note a replayed signature
      -> maintenance window (503 + Retry-After), or else the quota, decided on arrival as gateways do
         (429 + Retry-After; rate-limit headers on every answer)
      -> latency -> random fault (drop/503/502/stall/truncate)
      -> route: "/" versions | /v1/snapshots: authenticate (signature, skew, replay) -> parse query -> page
      -> churn after the page -> wait out a pause that began meanwhile -> gzip -> send

Everything is derived from the seed: the data, the fault decisions and the request ids. The server checks what SCP
checks (signature, clock skew, headers, every query parameter) and rejects more rather than less: unknown or
repeated parameters, empty values, bad percent-escapes. Pages are built by joining each snapshot's JSON, encoded
once, so the simulator stays far cheaper than any client it serves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import functools
import gzip
import hashlib
import heapq
import hmac
import json
import math
import random
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self, TypeAlias

import msgspec
from aiohttp import web

from .._config import Credentials
from .dataset import Dataset
from .faults import ESCAPES, NO_FAULTS, Faults, Plan
from .query import VERSIONS, ApiVersion, Query, parse_query
from .stats import Stats

__all__ = ["DEMO_CREDENTIALS", "STATS_PATH", "Simulator", "run_in_thread"]

#: The credentials a :class:`Simulator` accepts unless given others. They work nowhere else.
DEMO_CREDENTIALS: Final = Credentials(
    access_key="snapcrawl-demo-access-key",
    secret_key="snapcrawl-demo-secret-key",  # noqa: S106 - documented; only the simulator accepts it
)
#: ``GET`` this path for the simulator's :class:`Stats` as JSON (unauthenticated, uncounted, never faulted).
STATS_PATH: Final = "/_simulator/stats"

_CLIENT_TYPE: Final = "Openapi"  # the only Scp-ClientType SCP's OpenAPI accepts (official SDK)
_SHUTDOWN_TIMEOUT: Final = 0.25  # in-flight requests get this long on stop(), like an abrupt restart
_JSON: Final[Mapping[str, str]] = {"Content-Type": "application/json"}
_HTML: Final[Mapping[str, str]] = {"Content-Type": "text/html"}
_BAD_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

# An answer before it becomes a web.Response: status, body, headers.
_Answer: TypeAlias = tuple[int, bytes, Mapping[str, str]]


class _RejectedError(Exception):
    """Stop handling the request and send ``answer``."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


class _Replays:
    """The (timestamp, signature) pairs seen within the clock-skew window; older ones are forgotten."""

    __slots__ = ("_expiry", "_seen")

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, tuple[str, str]]] = []  # heap of (timestamp ms, pair)

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, timestamp: str, signature: str, window: float) -> bool:
        """Whether the pair was seen before; remembers it either way."""
        if not (timestamp.isascii() and timestamp.isdigit()):
            return False  # refused for its timestamp anyway
        oldest = int((time.time() - window) * 1000)
        expiry = self._expiry
        while expiry and expiry[0][0] < oldest:
            self._seen.discard(heapq.heappop(expiry)[1])
        pair = (timestamp, signature)
        if pair in self._seen:
            return True
        if int(timestamp) >= oldest:  # a stale one is refused for its skew: no need to remember it
            self._seen.add(pair)
            heapq.heappush(expiry, (int(timestamp), pair))
        return False


def ratelimit_headers(style: str, rate: float, tokens: float) -> dict[str, str]:
    """The rate-limit headers of ``style`` for a bucket refilled at ``rate``/s holding ``tokens`` now.

    IETF draft: a policy of ``q`` requests per ``w`` seconds (``w`` = 1 unless the rate is below one a second);
    ``r`` whole tokens left, ``t`` whole seconds until the next token (0 if one is there).
    """
    remaining = math.floor(tokens)
    reset = 0 if remaining >= 1 else math.ceil((1.0 - tokens) / rate)
    quota, window = (math.floor(rate), 1) if rate >= 1 else (1, math.ceil(1 / rate))
    headers: dict[str, str] = {}
    if style in ("ietf", "both"):
        headers["RateLimit-Policy"] = f'"default";q={quota};w={window}'
        headers["RateLimit"] = f'"default";r={remaining};t={reset}'
    if style in ("x", "both"):
        headers["X-RateLimit-Limit"] = f"{rate:g}"
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(reset)
    return headers


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip body of a few bytes per MiB that inflates to a ``size``-byte valid, empty page."""
    head, tail = b'{"count":0,"snapshots":[', b"]}"
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: with the gzip header and trailer
    chunk = b" " * (1 << 20)
    parts = [packer.compress(head)]
    left = max(0, size - len(head) - len(tail))
    while left:
        piece = chunk if left >= len(chunk) else chunk[:left]
        parts.append(packer.compress(piece))
        left -= len(piece)
    parts += [packer.compress(tail), packer.flush()]
    return b"".join(parts)


class Simulator:
    """An aiohttp server of ``GET /v1/snapshots`` over a :class:`Dataset`, on ``host``.

    Use it as an async context manager or call :meth:`start` and :meth:`stop`; restarting keeps the port.
    ``faults`` may be reassigned at any time, from any thread: the next request uses the new faults, with the
    random sequence, the rate-limit bucket and the schedules' clock started afresh. ``start``/``stop`` may be
    awaited from any event loop; the server always runs on the loop that first started it, while that loop runs.
    With an ``ssl_context`` it serves HTTPS.
    """

    def __init__(
        self,
        *,
        volumes: int = 2000,
        seed: int = 0,
        credentials: Credentials | None = None,
        faults: Faults = NO_FAULTS,
        host: str = "127.0.0.1",
        port: int = 0,
        max_clock_skew: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.dataset = Dataset(volumes, seed)
        self.seed = seed
        self.credentials = DEMO_CREDENTIALS if credentials is None else credentials
        self.host = host
        self.port = port
        self.max_clock_skew = max_clock_skew
        self.ssl_context = ssl_context
        self._plan = Plan(faults, seed)
        self.stats = Stats(quota_at=self._quota_at)
        self._ids = random.Random(f"request-ids/{seed}")
        self._gateway_count = 0
        self._mac = hmac.new(self.credentials.secret_key.encode(), digestmod=hashlib.sha256)
        self._replays = _Replays()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = f"url={self.url!r}" if self._runner is not None else "stopped"
        return f"Simulator({state}, dataset={self.dataset!r}, faults={self.faults!r})"

    @property
    def faults(self) -> Faults:
        """The faults injected into the coming requests."""
        return self._plan.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._plan = Plan(faults, self.seed)

    def _quota_at(self, now: float) -> float | None:
        return self._plan.quota(now)  # the plan of the moment: faults may be replaced

    @property
    def scheme(self) -> str:
        """``https`` with an SSL context, else ``http``."""
        return "http" if self.ssl_context is None else "https"

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:8080``; known once the simulator has started."""
        if not self.port:
            raise RuntimeError("the simulator has no port yet: start it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._runner is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving; after a :meth:`stop`, on the same port as before."""
        if await self._elsewhere(self._start):
            return
        await self._start()

    async def stop(self) -> None:
        """Stop serving and close every connection; requests in flight get a moment, then are cut."""
        if await self._elsewhere(self._stop):
            return
        await self._stop()

    async def _elsewhere(self, method: Callable[[], Any]) -> bool:
        """Run ``method`` on the server's own loop when that loop runs in another thread."""
        owner, current = self._loop, asyncio.get_running_loop()
        if owner is None or owner is current or not owner.is_running():
            self._loop = current
            return False
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(method(), owner))
        return True

    async def _start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        # handler_cancellation: a request whose client hung up stops counting as in flight right away.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- the request path --------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == STATS_PATH:  # for harnesses in another process; not counted, never faulted
            return web.Response(body=msgspec.json.encode(self.stats.as_dict()), content_type="application/json")
        plan, stats = self._plan, self.stats
        now = time.monotonic()
        plan.arrive(now)
        stats.arrive(now)
        try:
            if plan.pauses:
                await self._hold(plan)
            replayed = plan.faults.reject_replays and self._replayed(request)
            # The quota decides on arrival, as a gateway does, and its 429 takes the same latency as any answer.
            limits: Mapping[str, str] = {}
            early = self._maintenance(plan) if plan.maintenance else None
            if early is None and plan.limited:
                early, limits = self._throttle(plan)
            if plan.latency or plan.faults.latency_per_in_flight:
                await asyncio.sleep(plan.delay() + plan.faults.latency_per_in_flight * (stats.in_flight - 1))
            if early is not None:
                return await self._send(request, plan, early, limits)
            fault = plan.fault() if plan.draw else None
            if fault == "drop":
                await request.read()  # the whole request, so that a resend is a true replay
                stats.dropped += 1
                if request.transport is not None:
                    request.transport.close()
                return web.Response()  # never reaches the client: the connection is gone
            if fault == "error":
                body = self._error_body(503, "ServiceUnavailable", "Service Unavailable", "Please retry later")
                return await self._send(request, plan, (503, body, _JSON), limits)
            if fault == "html":
                return await self._send(request, plan, (502, _BAD_GATEWAY_PAGE, _HTML), limits)
            if fault == "stall":
                await asyncio.sleep(plan.faults.stall_seconds)
            status, body, headers = self._route(request, plan, replayed=replayed)
            if fault == "truncate" and status == 200:
                body = body[: len(body) // 2]
            return await self._send(request, plan, (status, body, headers), limits)
        finally:
            stats.in_flight -= 1

    async def _send(self, request: web.Request, plan: Plan, answer: _Answer, limits: Mapping[str, str]) -> web.Response:
        """Count the answer, wait out a pause that began meanwhile, compress if asked, and send it."""
        status, body, headers = answer
        self.stats.answered(time.monotonic(), status)
        if plan.pauses:
            await self._hold(plan)
        if limits:
            headers = {**headers, **limits}
        if plan.faults.gzip and "Content-Encoding" not in headers and _accepts_gzip(request.headers):
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return web.Response(status=status, body=body, headers=headers)

    @staticmethod
    async def _hold(plan: Plan) -> None:
        """Wait until no pause covers the present (``pause_end`` follows pauses that touch to the last one)."""
        if (end := plan.pause_end(time.monotonic())) is not None:
            await asyncio.sleep(max(0.0, end - time.monotonic()))

    def _replayed(self, request: web.Request) -> bool:
        """Whether this request's (timestamp, signature) pair was seen within the skew window."""
        timestamp, signature = request.headers.get("Scp-Timestamp"), request.headers.get("Scp-Signature")
        if not (timestamp and signature) or not self._replays.seen(timestamp, signature, self.max_clock_skew):
            return False
        self.stats.replayed += 1
        return True

    def _throttle(self, plan: Plan) -> tuple[_Answer | None, Mapping[str, str]]:
        """The 429 to send if the quota is spent, and the rate-limit headers every answer carries."""
        rate, wait, tokens = plan.throttle(time.monotonic())
        if rate is None:
            return None, {}
        faults = plan.faults
        limits = ratelimit_headers(faults.ratelimit_headers, rate, tokens) if faults.ratelimit_headers != "none" else {}
        if not wait:
            return None, limits
        headers = {**_JSON, **_retry_after(faults.retry_after, wait)}
        detail = f"Too many requests: over {rate:g} requests per second"
        return (429, self._error_body(429, "TooManyRequests", "Too Many Requests", detail), headers), limits

    def _maintenance(self, plan: Plan) -> _Answer | None:
        """The 503 of a maintenance window covering now, whose ``Retry-After`` says when it ends (never omitted)."""
        now = time.monotonic()
        if (end := plan.maintenance_end(now)) is None:
            return None
        wait = end - now
        form = "seconds" if plan.faults.retry_after == "none" else plan.faults.retry_after
        detail = "Down for maintenance: retry after the time given in Retry-After"
        body = self._error_body(503, "ServiceUnavailable", "Service Unavailable", detail)
        return 503, body, {**_JSON, **_retry_after(form, wait)}

    def _route(self, request: web.Request, plan: Plan, *, replayed: bool) -> _Answer:
        path = request.path
        if path == "/v1/snapshots":
            if request.method not in ("GET", "HEAD"):
                detail = f"Method {request.method} is not allowed on {path}"
                return 405, self._error_body(405, "MethodNotAllowed", "Method Not Allowed", detail), _JSON
            try:
                return self._list(request, plan, replayed=replayed)
            except _RejectedError as exc:
                return exc.answer
        if path == "/" and request.method in ("GET", "HEAD"):
            return 200, self._versions(request), _JSON
        return self._gateway_not_found(request)

    def _list(self, request: web.Request, plan: Plan, *, replayed: bool) -> _Answer:
        version = self._authenticate(request)
        if version is None:
            return self._gateway_not_found(request)
        if replayed:
            raise self._deny("Replayed request: this Scp-Timestamp and Scp-Signature were already used")
        _, _, raw_query = request.raw_path.partition("?")
        query = parse_query(raw_query, version)
        if isinstance(query, list):
            raise self._invalid(query)
        if query.volume_id is not None and query.volume_id in plan.volumes:
            return self._volume_fault(query, plan)
        return self._page(query, plan)

    def _authenticate(self, request: web.Request) -> ApiVersion | None:
        """The API version of a properly signed request, ``None`` if it has no access key at all."""
        headers = request.headers
        access_key = headers.get("Scp-Accesskey")
        if access_key is None:
            return None
        signature = headers.get("Scp-Signature")
        timestamp = headers.get("Scp-Timestamp")
        client_type = headers.get("Scp-ClientType")
        version_name = headers.get("Scp-Api-Version")
        if not (signature and timestamp and client_type and version_name and headers.get("Accept-Language")):
            names = ("Scp-Signature", "Scp-Timestamp", "Scp-ClientType", "Scp-Api-Version", "Accept-Language")
            raise self._deny(f"Missing required header(s): {', '.join(n for n in names if not headers.get(n))}")
        credentials = self.credentials
        if access_key != credentials.access_key:
            raise self._deny("Unknown access key")
        if client_type != _CLIENT_TYPE:
            raise self._deny(f"Invalid Scp-ClientType {client_type!r}; expected {_CLIENT_TYPE!r}")
        version = VERSIONS.get(version_name)
        if version is None:
            raise self._deny(f"Unsupported Scp-Api-Version {version_name!r}; supported: {', '.join(VERSIONS)}")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise self._deny(f"Invalid Scp-Timestamp {timestamp!r}: expected Unix time in milliseconds")
        skew = abs(time.time() - int(timestamp) / 1000)
        if skew > self.max_clock_skew:
            raise self._deny(
                f"Scp-Timestamp is {skew:.0f} s away from server time (allowed: {self.max_clock_skew:g} s)"
            )
        account_id = headers.get("Scp-AccountId", "")
        if credentials.account_id and account_id != credentials.account_id:
            raise self._deny("Missing or wrong Scp-AccountId")
        mac = self._mac.copy()
        mac.update(f"{request.method}{self.scheme}://{request.host}{request.raw_path}{timestamp}".encode())
        mac.update(f"{access_key}{account_id}{client_type}".encode())
        if not hmac.compare_digest(base64.b64encode(mac.digest()), signature.encode("utf-8", "surrogateescape")):
            raise self._deny("Invalid signature")
        return version

    def _volume_fault(self, query: Query, plan: Plan) -> _Answer:
        volume_id, faults = query.volume_id or "", plan.faults
        if volume_id in faults.fail_volumes:
            detail = f"Internal error while listing snapshots of volume {volume_id}"
            return 500, self._error_body(500, "InternalServerError", "Internal Server Error", detail), _JSON
        if volume_id in faults.escape_volumes:
            return 400, self._error_body(400, "ValidationError", "ValidationError", f"volume_id: {ESCAPES}"), _JSON
        if volume_id in faults.malformed_volumes:
            return 200, b'{"count":1,"snapshots":[{"id":"' + volume_id.encode() + b'","size":,}]', _JSON
        if volume_id in faults.bomb_volumes:
            return 200, gzip_bomb(faults.bomb_bytes), {**_JSON, "Content-Encoding": "gzip"}
        if volume_id in faults.huge_volumes:
            return self._page(query, plan, huge=faults.huge_body_bytes)
        return self._page(query, plan, hostile=volume_id)

    def _page(self, query: Query, plan: Plan, *, huge: int | None = None, hostile: str | None = None) -> _Answer:
        ordering = self.dataset.ordering(query.volume_id, query.name, query.sort)
        faults = plan.faults
        limit = query.limit if faults.max_limit is None else min(query.limit, faults.max_limit)
        start = query.offset
        if query.marker is not None:
            after = ordering.after(query.marker)
            if after is None:
                raise self._invalid([f"marker: snapshot {query.marker!r} not found in this listing"])
            if hostile in faults.inclusive_volumes:
                after -= 1  # the marker's own snapshot first
            elif hostile in faults.cycle_volumes and after >= 2 * limit:
                after %= 2 * limit  # past the second page: round to the first again
            start += after
        items = ordering.bodies[start : start + limit]
        count = str(len(ordering.ids)).encode() if query.with_count else b"null"
        if huge is not None:
            items = _padded(items, huge)
        if hostile is not None:
            items = _hostile_values(items, hostile, faults)
        body = b'{"count":%b,"snapshots":[%b]}' % (count, b",".join(items))
        if faults.churn is not None and items:
            end = min(start + limit, len(ordering.ids))
            self.dataset.churn(faults.churn, plan.churn_rng, query.volume_id, ordering.ids, end)
        return 200, body, _JSON

    # -- error bodies ------------------------------------------------------------------------------------------

    def _deny(self, detail: str) -> _RejectedError:
        return _RejectedError((401, self._error_body(401, "Unauthorized", "Unauthorized", detail), _JSON))

    def _invalid(self, details: list[str]) -> _RejectedError:
        return _RejectedError((400, self._error_body(400, "ValidationError", "ValidationError", details), _JSON))

    def _request_id(self) -> str:
        return f"req-{self._ids.getrandbits(128):032x}"

    def _error_body(self, status: int, code: str, title: str, detail: str | list[str]) -> bytes:
        error = {
            "code": code,
            "detail": detail,
            "status": status,
            "title": title,
            "request_id": self._request_id(),
            "global_request_id": self._request_id(),
        }
        return msgspec.json.encode({"errors": [error]})

    def _gateway_not_found(self, request: web.Request) -> _Answer:
        self._gateway_count += 1
        body = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "path": request.path,
            "status": 404,
            "error": "Not Found",
            "requestId": f"{self._ids.getrandbits(32):08x}-{self._gateway_count}",
        }
        return 404, msgspec.json.encode(body), _JSON

    def _versions(self, request: web.Request) -> bytes:
        base = f"{self.scheme}://{request.host}"
        versions = [
            {
                "id": f"v{info.id}",
                "links": [{"href": f"{base}/v1", "rel": "self"}],
                "not_before": None if info.not_before is None else info.not_before.isoformat(),
                "status": info.status,
            }
            for info in VERSIONS.values()
        ]
        return msgspec.json.encode({"versions": versions})


def _retry_after(form: str, wait: float) -> dict[str, str]:
    """A ``Retry-After`` header for ``wait`` seconds in ``form`` (``seconds`` or ``http-date``); none for ``none``."""
    if form == "seconds":
        return {"Retry-After": str(max(1, math.ceil(wait)))}
    if form == "http-date":
        return {"Retry-After": email.utils.formatdate(math.ceil(time.time() + wait), usegmt=True)}
    return {}


def _accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: listed (or ``*``) without ``q=0``."""
    for item in headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            _, q, quality = params.replace(" ", "").lower().partition("q=")
            try:
                return not q or float(quality) > 0
            except ValueError:
                return False
    return False


def _hostile_values(items: list[bytes], volume_id: str, faults: Faults) -> list[bytes]:
    """The page's snapshots with the values ``volume_id``'s faults ask for: NUL, huge integers, far dates."""
    groups = (faults.nul_volumes, faults.big_int_volumes, faults.far_date_volumes)
    nul, big, far = (volume_id in group for group in groups)
    if not (nul or big or far):
        return items
    changed = []
    for item in items:
        snapshot = json.loads(item)
        if nul:
            snapshot["name"] = "nul\x00name"
            snapshot["description"] = "before\x00after"
            snapshot["metadata"] = {"key\x00": "value\x00"}
        if big:
            snapshot["size"] = 2**64 + 1
        if far:
            snapshot["created_at"] = "0001-01-01T00:30:00+01:00"
        changed.append(json.dumps(snapshot, separators=(",", ":")).encode())
    return changed


def _padded(items: list[bytes], size: int) -> list[bytes]:
    """The page with its first snapshot's description blown up past ``size`` bytes (whitespace if empty)."""
    if not items:
        return [b" " * (size + 1)]  # JSON allows whitespace inside the array
    first = msgspec.json.decode(items[0])
    first["description"] = "x" * (size + 1)
    return [msgspec.json.encode(first), *items[1:]]


@contextlib.contextmanager
def run_in_thread(
    *,
    volumes: int = 2000,
    seed: int = 0,
    credentials: Credentials | None = None,
    faults: Faults = NO_FAULTS,
    host: str = "127.0.0.1",
    port: int = 0,
    max_clock_skew: float = 300.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[Simulator]:
    """Run a :class:`Simulator` on its own event loop in a daemon thread; yield it once it serves."""
    simulator = Simulator(
        volumes=volumes,
        seed=seed,
        credentials=credentials,
        faults=faults,
        host=host,
        port=port,
        max_clock_skew=max_clock_skew,
        ssl_context=ssl_context,
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(simulator.start())
        except BaseException as exc:
            failure.append(exc)
        ready.set()
        try:
            if not failure:
                loop.run_forever()
                loop.run_until_complete(simulator.stop())
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="snapcrawl-simulator", daemon=True)
    thread.start()
    ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield simulator
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
