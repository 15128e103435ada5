"""A local, strict, deterministic server of SCP's ``GET /v1/snapshots``, with fault injection.

::

    async with Simulator(volumes=2000, seed=0) as sim:
        ...  # point a client at sim.url, signing with sim.credentials

    with run_in_thread(volumes=2000) as sim:  # the server gets its own thread and event loop
        ...

Everything is derived from ``seed``: the data (:class:`Dataset`), the fault decisions (:class:`Faults`) and the
request ids. The server checks what SCP checks (signature, clock skew, headers, every query parameter) and rejects
more rather than less: unknown or repeated parameters, empty values, bad percent-escapes. Pages are built by joining
each snapshot's JSON, encoded once, so the simulator stays far cheaper than any client it serves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import functools
import hashlib
import hmac
import math
import operator
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias
from urllib.parse import unquote_plus

import msgspec
from aiohttp import web
from msgspec.structs import force_setattr

from ._config import API_VERSIONS, ApiVersion, Credentials
from ._signing import DEFAULT_CLIENT_TYPE

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEMO_CREDENTIALS",
    "MAX_PAGE_SIZE",
    "NO_FAULTS",
    "SORT_KEYS",
    "STATS_PATH",
    "Dataset",
    "Faults",
    "Simulator",
    "Stats",
    "run_in_thread",
]

#: The credentials a :class:`Simulator` accepts unless given others. They work nowhere else.
DEMO_CREDENTIALS: Final = Credentials(
    access_key="snapcrawl-demo-access-key",
    secret_key="snapcrawl-demo-secret-key",  # noqa: S106 - documented; only the simulator accepts it
)
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 1000
SORT_KEYS: Final = ("created_at", "name", "size", "status", "id")

_SHUTDOWN_TIMEOUT: Final = 0.25  # in-flight requests get this long on stop(), like an abrupt restart
_JSON: Final[Mapping[str, str]] = {"Content-Type": "application/json"}
_HTML: Final[Mapping[str, str]] = {"Content-Type": "text/html"}
_BAD_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

# An answer before it becomes a web.Response: status, body, headers.
_Answer: TypeAlias = tuple[int, bytes, Mapping[str, str]]
_SortSpec: TypeAlias = tuple[tuple[str, bool], ...]  # (key, descending) pairs, ending with "id"
_DEFAULT_SORT: Final[_SortSpec] = (("created_at", True), ("id", True))


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator breaks and how often; the defaults break nothing.

    The ``*_rate`` fractions are exclusive outcomes of one draw per request, so they must add up to at most 1.
    ``rate_limit`` (requests/s, bucket of ``rate_burst``) answers 429 with ``Retry-After`` in ``retry_after``
    form; ``latency`` (seconds, or a uniform range) delays every answer, and ``stall_rate`` of the requests
    wait ``stall_seconds`` more (long enough to trip a client's timeout). Requests for a volume in
    ``fail_volumes`` get 500, in ``malformed_volumes`` a 200 with broken JSON, in ``huge_volumes`` a valid page
    larger than ``huge_body_bytes``.
    """

    rate_limit: float | None = None
    rate_burst: int = 10
    retry_after: Literal["seconds", "http-date", "none"] = "seconds"
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency: float | tuple[float, float] = 0.0
    truncate_rate: float = 0.0
    html_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    fail_volumes: frozenset[str] = frozenset()
    malformed_volumes: frozenset[str] = frozenset()
    huge_volumes: frozenset[str] = frozenset()
    huge_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("fail_volumes", "malformed_volumes", "huge_volumes"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a collection of volume ids, not a string")
            force_setattr(self, name, frozenset(value))
        rates = (self.error_rate, self.drop_rate, self.truncate_rate, self.html_rate, self.stall_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(
                "error_rate, drop_rate, truncate_rate, html_rate and stall_rate must be in [0, 1], sum <= 1"
            )
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, not {self.stall_seconds}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 or None, not {self.rate_limit}")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, not {self.rate_burst}")
        if self.retry_after not in ("seconds", "http-date", "none"):
            raise ValueError(f"retry_after must be 'seconds', 'http-date' or 'none', not {self.retry_after!r}")
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency, self.latency)
        if not 0.0 <= low <= high:
            raise ValueError(f"latency must be >= 0 seconds, or a (low, high) range, not {self.latency!r}")
        if self.huge_body_bytes < 0:
            raise ValueError(f"huge_body_bytes must be >= 0, not {self.huge_body_bytes}")


#: ``GET`` this path for the simulator's :class:`Stats` as JSON (unauthenticated, uncounted, never faulted).
STATS_PATH: Final = "/_simulator/stats"

#: The default :class:`Faults`: nothing breaks.
NO_FAULTS: Final = Faults()


class Stats:
    """What the simulator has seen since it was created or :meth:`reset`.

    ``arrivals`` holds the ``time.monotonic()`` arrival of every request; ``by_status`` counts answers by HTTP
    status, ``dropped`` the connections closed without one.
    """

    __slots__ = ("arrivals", "by_status", "dropped", "in_flight", "max_in_flight", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.dropped = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []

    def reset(self) -> None:
        """Forget everything seen so far; requests still in flight stay counted as in flight."""
        self.requests = 0
        self.by_status = Counter()
        self.dropped = 0
        self.max_in_flight = self.in_flight
        self.arrivals = []

    def max_in_window(self, window: float = 1.0) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        arrivals, best, first = self.arrivals[:], 0, 0
        for last, stamp in enumerate(arrivals):
            while stamp - arrivals[first] >= window:
                first += 1
            best = max(best, last - first + 1)
        return best

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready values, with the busiest one-second window."""
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in self.by_status.items()},
            "dropped": self.dropped,
            "max_in_flight": self.max_in_flight,
            "max_in_1s_window": self.max_in_window(1.0),
        }

    def __repr__(self) -> str:
        return (
            f"Stats(requests={self.requests}, by_status={dict(self.by_status)}, dropped={self.dropped}, "
            f"in_flight={self.in_flight}, max_in_flight={self.max_in_flight})"
        )


# ---------------------------------------------------------------------------------------------------------------
# The data
# ---------------------------------------------------------------------------------------------------------------

_SIZES: Final = (8, 10, 16, 20, 32, 50, 64, 100, 104, 128, 200, 256, 500, 512, 1024, 2048)
_STATUSES: Final = ("creating", "deleting", "error", "error_deleting", "backing-up", "restoring")
_END: Final = int(dt.datetime(2025, 11, 1, tzinfo=dt.UTC).timestamp())  # newest snapshot day
_DAY: Final = 86_400
_CACHED_VOLUMES: Final = 16_384  # volumes (and listings) kept generated and sorted


def _uuid(raw: bytes) -> str:
    """Format 16 bytes as a random (version 4) UUID string."""
    data = bytearray(raw)
    data[6] = (data[6] & 0x0F) | 0x40
    data[8] = (data[8] & 0x3F) | 0x80
    h = data.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class _Snap:
    """One generated snapshot: its sort keys and its JSON, encoded once."""

    __slots__ = ("body", "created", "id", "name", "size", "status")

    def __init__(self, record: dict[str, Any], created: str) -> None:
        self.id: str = record["id"]
        self.name: str | None = record["name"]
        self.size: int = record["size"]
        self.status: str | None = record["status"]
        self.created = created  # the timestamp without its zone: naive times are UTC, so this sorts right
        self.body = msgspec.json.encode(record)


def _nullable(value: str | None) -> tuple[bool, str]:
    return (value is not None, value or "")  # None first when ascending


_SORT_KEY_FUNCS: Final[Mapping[str, Callable[[_Snap], Any]]] = {
    "created_at": operator.attrgetter("created"),
    "name": lambda snap: _nullable(snap.name),
    "size": operator.attrgetter("size"),
    "status": lambda snap: _nullable(snap.status),
    "id": operator.attrgetter("id"),
}


class _Ordering:
    """The matching snapshots of one listing in one sort order."""

    __slots__ = ("_index", "bodies", "ids")

    def __init__(self, snaps: list[_Snap]) -> None:
        self.bodies = [snap.body for snap in snaps]
        self.ids = [snap.id for snap in snaps]
        self._index: dict[str, int] | None = None

    def after(self, marker: str) -> int | None:
        """The position right after ``marker``, or ``None`` if it is not in this listing."""
        if len(self.ids) <= 64:
            return self.ids.index(marker) + 1 if marker in self.ids else None
        if self._index is None:
            self._index = {snap_id: pos for pos, snap_id in enumerate(self.ids)}
        pos = self._index.get(marker)
        return None if pos is None else pos + 1


class Dataset:
    """Deterministic synthetic snapshots of ``volumes`` volumes, a function of ``(volumes, seed)`` only.

    Volume ``i`` depends on ``(seed, i)`` alone and is generated on first use, then cached, so large datasets
    cost only what is read. Most volumes have 0-5 snapshots, some 6-40, about 2% between 100 and 400.
    """

    def __init__(self, volumes: int, seed: int = 0) -> None:
        if volumes < 0:
            raise ValueError(f"volumes must be >= 0, not {volumes}")
        self.volumes = volumes
        self.seed = seed
        self.volume_ids: list[str] = []
        self._counts: list[int] = []
        self._seeds: list[int] = []
        for index in range(volumes):
            digest = hashlib.blake2b(f"snapcrawl/{seed}/{index}".encode(), digest_size=32).digest()
            self.volume_ids.append(_uuid(digest[:16]))
            bucket = int.from_bytes(digest[16:20]) / 2**32
            pick = int.from_bytes(digest[20:24])
            if bucket < 0.02:
                count = 100 + pick % 301
            elif bucket < 0.15:
                count = 6 + pick % 35
            else:
                count = pick % 6
            self._counts.append(count)
            self._seeds.append(int.from_bytes(digest[24:]))
        self._positions = {volume_id: index for index, volume_id in enumerate(self.volume_ids)}
        # Bounded so that crawling 100,000 volumes does not keep a million snapshots; regenerating is exact.
        self._volume = functools.lru_cache(maxsize=_CACHED_VOLUMES)(self._generate)
        self._ordering = functools.lru_cache(maxsize=_CACHED_VOLUMES)(self._build_ordering)

    def __repr__(self) -> str:
        return f"Dataset(volumes={self.volumes}, seed={self.seed})"

    @functools.cached_property
    def total(self) -> int:
        """The number of snapshots in the whole account."""
        return sum(self._counts)

    def count(self, volume_id: str | None = None) -> int:
        """How many snapshots ``volume_id`` has (0 if unknown); the whole account's for ``None``."""
        if volume_id is None:
            return self.total
        index = self._positions.get(volume_id)
        return 0 if index is None else self._counts[index]

    def snapshots(self, volume_id: str | None = None) -> list[dict[str, Any]]:
        """Fresh copies of the snapshots of ``volume_id`` (whole account for ``None``), in creation order.

        They are decoded from the very bytes the server sends.
        """
        return [msgspec.json.decode(snap.body) for snap in self._snaps(volume_id)]

    def _snaps(self, volume_id: str | None) -> list[_Snap]:
        if volume_id is None:
            return [snap for index in range(self.volumes) for snap in self._volume(index)]
        index = self._positions.get(volume_id)
        return [] if index is None else self._volume(index)

    def _generate(self, index: int) -> list[_Snap]:
        rng = random.Random(self._seeds[index])
        volume_id = self.volume_ids[index]
        size = rng.choice(_SIZES)
        owner = f"{rng.getrandbits(128):032x}"
        scheduled = rng.random() < 0.4  # a backup policy: every few days at exactly 09:00:00 UTC
        # Walk back in time from the newest snapshot, then list them oldest first.
        when = _END - rng.randrange(400) * _DAY - (15 * 3600 if scheduled else rng.randrange(_DAY))
        times = []
        for number in range(self._counts[index]):
            if number and rng.random() >= 0.05:  # else: the same second as the one after it
                when -= _DAY * rng.randint(1, 3) if scheduled else rng.randrange(600, 2 * _DAY)
            times.append(when)
        snaps = []
        for number, when in enumerate(reversed(times), start=1):
            created = _iso(when)
            record = {
                "created_at": created if rng.random() < 0.05 else created + "Z",
                "description": _description(rng),
                "id": _uuid(rng.getrandbits(128).to_bytes(16)),
                "metadata": _metadata(rng),
                "name": _name(rng, number, created, volume_id),
                "size": size,
                "status": _status(rng),
                "updated_at": None if rng.random() < 0.3 else _iso(when + rng.randrange(60, 3 * _DAY)) + "Z",
                "user_id": None if rng.random() < 0.1 else owner,
                "volume_id": volume_id,
            }
            snaps.append(_Snap(record, created))
        return snaps

    def _build_ordering(self, volume_id: str | None, name: str | None, sort: _SortSpec) -> _Ordering:
        snaps = self._snaps(volume_id)
        snaps = snaps[:] if name is None else [snap for snap in snaps if snap.name == name]
        for key, descending in reversed(sort):  # stable sorts, least significant key first
            snaps.sort(key=_SORT_KEY_FUNCS[key], reverse=descending)
        return _Ordering(snaps)


def _name(rng: random.Random, number: int, created: str, volume_id: str) -> str | None:
    roll = rng.random()
    if roll < 0.10:
        return None
    if roll < 0.55:
        return f"snapshot-{number}"
    if roll < 0.65:
        return f"스냅샷-{number}"
    if roll < 0.75:
        return f"daily backup {created[:10]}"
    choices = ("backup ü/ñ", "weekly & monthly + 50% = ?#", "📦 archive", " padded  name ", f"vol-{volume_id[:8]}")
    return choices[int((roll - 0.75) / 0.05)]


def _description(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.7:
        return "Created by backup policy"
    if roll < 0.8:
        return "수동 백업 (manual)"
    return "" if roll < 0.9 else 'line one\nline "two"\t\\ end'


def _metadata(rng: random.Random) -> dict[str, str] | str | None:
    roll = rng.random()
    if roll < 0.5:
        return {"policy": rng.choice(("daily", "weekly", "manual")), "retention_days": rng.choice(("7", "30"))}
    if roll < 0.6:
        return {}
    return "Metadata" if roll < 0.8 else None


def _status(rng: random.Random) -> str:
    roll = rng.random()
    return "available" if roll < 0.85 else _STATUSES[min(int((roll - 0.85) / 0.025), len(_STATUSES) - 1)]


# ---------------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------------

_ALLOWED_PARAMS: Final = frozenset({"volume_id", "limit", "offset", "marker", "with_count", "name", "sort"})
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_VERSIONS: Final[Mapping[str, ApiVersion]] = {f"virtualserver {key}": info for key, info in API_VERSIONS.items()}
_MAX_OFFSET: Final = 2**31 - 1


class _Query(msgspec.Struct, frozen=True):
    """A validated query of ``GET /v1/snapshots``."""

    volume_id: str | None = None
    name: str | None = None
    sort: _SortSpec = _DEFAULT_SORT
    marker: str | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE_SIZE
    with_count: bool = True


_DEFAULT_QUERY: Final = _Query()


@functools.lru_cache(maxsize=256)
def _parse_sort(value: str) -> _SortSpec:
    """Parse ``key[:dir],...``; a key without a direction sorts descending, as in OpenStack Cinder."""
    spec: list[tuple[str, bool]] = []
    for item in value.split(","):
        key, colon, direction = item.partition(":")
        if key not in SORT_KEYS:
            raise ValueError(f"sort: unknown sort key {key!r}; allowed keys are {', '.join(SORT_KEYS)}")
        if colon and direction not in ("asc", "desc"):
            raise ValueError(f"sort: unknown sort direction {direction!r} for {key!r}; use asc or desc")
        if any(key == seen for seen, _ in spec):
            raise ValueError(f"sort: sort key {key!r} given more than once")
        spec.append((key, direction != "asc"))
    if all(key != "id" for key, _ in spec):
        spec.append(("id", spec[0][1]))  # ties break by id, in the first key's direction
    return tuple(spec)


def _split_query(raw: str) -> tuple[dict[str, str], list[str]]:
    """Decode ``raw`` strictly into single-valued parameters, and the problems found."""
    params: dict[str, str] = {}
    errors: list[str] = []
    for part in raw.split("&"):
        key, equals, value = part.partition("=")
        if not part.isascii():
            errors.append(f"query parameter {part!r} is not percent-encoded")
            continue
        if "%" in part or "+" in part:
            if _BAD_ESCAPE.search(part):
                errors.append(f"malformed percent-escape in query parameter {part!r}")
                continue
            try:
                key, value = unquote_plus(key, errors="strict"), unquote_plus(value, errors="strict")
            except UnicodeDecodeError:
                errors.append(f"query parameter {part!r} is not valid UTF-8")
                continue
        if not equals:
            errors.append(f"malformed query parameter {part!r}: expected key=value")
        elif key not in _ALLOWED_PARAMS:
            errors.append(f"{key}: unknown query parameter; allowed: {', '.join(sorted(_ALLOWED_PARAMS))}")
        elif key in params:
            errors.append(f"{key}: query parameter given more than once")
        elif not value:
            errors.append(f"{key}: must not be empty")
        else:
            params[key] = value
    return params, errors


def _integer(params: dict[str, str], key: str, low: int, high: int, errors: list[str]) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if _INTEGER.fullmatch(value) is None:
        errors.append(f"{key}: must be an integer, not {value!r}")
        return None
    number = int(value)
    if not low <= number <= high:
        errors.append(f"{key}: must be between {low} and {high}, not {number}")
        return None
    return number


def _parse_query(raw: str, version: ApiVersion) -> _Query | list[str]:
    """The validated query, or the problems, each naming its parameter."""
    if not raw:
        return _DEFAULT_QUERY
    params, errors = _split_query(raw)
    limit = _integer(params, "limit", 1, MAX_PAGE_SIZE, errors)
    offset = _integer(params, "offset", 0, _MAX_OFFSET, errors)
    with_count = params.get("with_count", "true")
    if with_count not in ("true", "false"):
        errors.append(f"with_count: must be true or false, not {with_count!r}")
    sort = _DEFAULT_SORT
    if (sort_value := params.get("sort")) is not None:
        if not version.supports_sort:
            errors.append(f"sort: not supported by API version {version.id}; it needs 1.2 or later")
        else:
            try:
                sort = _parse_sort(sort_value)
            except ValueError as exc:
                errors.append(str(exc))
    if errors:
        return errors
    return _Query(
        volume_id=params.get("volume_id"),
        name=params.get("name"),
        sort=sort,
        marker=params.get("marker"),
        offset=offset or 0,
        limit=limit or DEFAULT_PAGE_SIZE,
        with_count=with_count == "true",
    )


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst``, starting full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, now: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one will be."""
        tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class _Plan:
    """The active :class:`Faults`, precomputed for the request path and swapped whole."""

    __slots__ = ("bucket", "cuts", "draw", "faults", "latency", "rng", "volumes")

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.bucket = None if faults.rate_limit is None else _Bucket(faults.rate_limit, faults.rate_burst)
        drop = faults.drop_rate
        error = drop + faults.error_rate
        html = error + faults.html_rate
        truncate = html + faults.truncate_rate
        self.cuts = (drop, error, html, truncate, truncate + faults.stall_rate)
        self.draw = self.cuts[-1] > 0.0
        self.latency = faults.latency
        self.volumes = faults.fail_volumes | faults.malformed_volumes | faults.huge_volumes

    def delay(self) -> float:
        latency = self.latency
        return self.rng.uniform(*latency) if isinstance(latency, tuple) else latency


class _RejectedError(Exception):
    """Stop handling the request and send ``answer``."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


class Simulator:
    """An aiohttp server of ``GET /v1/snapshots`` over a :class:`Dataset`, on ``host``.

    Use it as an async context manager or call :meth:`start` and :meth:`stop`; restarting keeps the port.
    ``faults`` may be reassigned at any time, from any thread: the next request uses the new faults, with the
    random sequence and the rate-limit bucket started afresh. ``start``/``stop`` may be awaited from any event
    loop; the server always runs on the loop that first started it, while that loop runs.
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
    ) -> None:
        self.dataset = Dataset(volumes, seed)
        self.seed = seed
        self.credentials = DEMO_CREDENTIALS if credentials is None else credentials
        self.host = host
        self.port = port
        self.max_clock_skew = max_clock_skew
        self.stats = Stats()
        self._plan = _Plan(faults, seed)
        self._ids = random.Random(f"request-ids/{seed}")
        self._gateway_count = 0
        self._mac = hmac.new(self.credentials.secret_key.encode(), digestmod=hashlib.sha256)
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
        self._plan = _Plan(faults, self.seed)

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:8080``; known once the simulator has started."""
        if not self.port:
            raise RuntimeError("the simulator has no port yet: start it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
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
        stats = self.stats
        stats.requests += 1
        stats.arrivals.append(time.monotonic())
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            plan = self._plan
            if plan.latency:
                await asyncio.sleep(plan.delay())
            fault = self._global_fault(plan) if plan.bucket is not None or plan.draw else None
            if fault == "drop":
                stats.dropped += 1
                if request.transport is not None:
                    request.transport.close()
                return web.Response()  # never reaches the client: the connection is gone
            if fault == "stall":
                await asyncio.sleep(plan.faults.stall_seconds)
            if isinstance(fault, tuple):
                status, body, headers = fault
            else:
                status, body, headers = self._route(request, plan)
                if fault == "truncate" and status == 200:
                    body = body[: len(body) // 2]
            stats.by_status[status] += 1
            return web.Response(status=status, body=body, headers=headers)
        finally:
            stats.in_flight -= 1

    def _global_fault(self, plan: _Plan) -> _Answer | Literal["drop", "truncate", "stall"] | None:
        """Rate limiting, then the random faults: an answer to send, what to do instead, or ``None``."""
        if plan.bucket is not None and (wait := plan.bucket.take(time.monotonic())):
            headers = dict(_JSON)
            if plan.faults.retry_after == "seconds":
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
            elif plan.faults.retry_after == "http-date":
                headers["Retry-After"] = email.utils.formatdate(math.ceil(time.time() + wait), usegmt=True)
            detail = f"Too many requests: over {plan.faults.rate_limit:g} requests per second"
            return 429, self._error_body(429, "TooManyRequests", "Too Many Requests", detail), headers
        if not plan.draw:
            return None
        roll = plan.rng.random()
        drop, error, html, truncate, stall = plan.cuts
        if roll < drop:
            return "drop"
        if roll < error:
            body = self._error_body(503, "ServiceUnavailable", "Service Unavailable", "Please retry later")
            return 503, body, _JSON
        if roll < html:
            return 502, _BAD_GATEWAY_PAGE, _HTML
        return "truncate" if roll < truncate else "stall" if roll < stall else None

    def _route(self, request: web.Request, plan: _Plan) -> _Answer:
        path = request.path
        if path == "/v1/snapshots":
            if request.method not in ("GET", "HEAD"):
                detail = f"Method {request.method} is not allowed on {path}"
                return 405, self._error_body(405, "MethodNotAllowed", "Method Not Allowed", detail), _JSON
            try:
                return self._list(request, plan)
            except _RejectedError as exc:
                return exc.answer
        if path == "/" and request.method in ("GET", "HEAD"):
            return 200, self._versions(request), _JSON
        return self._gateway_not_found(request)

    def _list(self, request: web.Request, plan: _Plan) -> _Answer:
        version = self._authenticate(request)
        if version is None:
            return self._gateway_not_found(request)
        _, _, raw_query = request.raw_path.partition("?")
        query = _parse_query(raw_query, version)
        if isinstance(query, list):
            raise self._invalid(query)
        if query.volume_id is not None and query.volume_id in plan.volumes:
            return self._volume_fault(query, plan.faults)
        return self._page(query)

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
        if client_type != DEFAULT_CLIENT_TYPE:
            raise self._deny(f"Invalid Scp-ClientType {client_type!r}; expected {DEFAULT_CLIENT_TYPE!r}")
        version = _VERSIONS.get(version_name)
        if version is None:
            raise self._deny(f"Unsupported Scp-Api-Version {version_name!r}; supported: {', '.join(_VERSIONS)}")
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
        mac.update(f"{request.method}http://{request.host}{request.raw_path}{timestamp}".encode())
        mac.update(f"{access_key}{account_id}{client_type}".encode())
        if not hmac.compare_digest(base64.b64encode(mac.digest()), signature.encode("utf-8", "surrogateescape")):
            raise self._deny("Invalid signature")
        return version

    def _volume_fault(self, query: _Query, faults: Faults) -> _Answer:
        volume_id = query.volume_id or ""
        if volume_id in faults.fail_volumes:
            detail = f"Internal error while listing snapshots of volume {volume_id}"
            return 500, self._error_body(500, "InternalServerError", "Internal Server Error", detail), _JSON
        if volume_id in faults.malformed_volumes:
            return 200, b'{"count":1,"snapshots":[{"id":"' + volume_id.encode() + b'","size":,}]', _JSON
        return self._page(query, huge=faults.huge_body_bytes)

    def _page(self, query: _Query, *, huge: int | None = None) -> _Answer:
        ordering = self.dataset._ordering(query.volume_id, query.name, query.sort)
        start = query.offset
        if query.marker is not None:
            after = ordering.after(query.marker)
            if after is None:
                raise self._invalid([f"marker: snapshot {query.marker!r} not found in this listing"])
            start += after
        items = ordering.bodies[start : start + query.limit]
        if huge is not None:
            items = _padded(items, huge)
        count = str(len(ordering.ids)).encode() if query.with_count else b"null"
        return 200, b'{"count":%b,"snapshots":[%b]}' % (count, b",".join(items)), _JSON

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
        base = f"http://{request.host}"
        versions = [
            {
                "id": f"v{info.id}",
                "links": [{"href": f"{base}/v1", "rel": "self"}],
                "not_before": None if info.not_before is None else info.not_before.isoformat(),
                "status": info.status,
            }
            for info in sorted(API_VERSIONS.values(), key=lambda info: info.id, reverse=True)
        ]
        return msgspec.json.encode({"versions": versions})


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
