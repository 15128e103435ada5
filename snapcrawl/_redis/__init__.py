"""The one room for Redis: the client factory, what a Redis error means, the Lua scripts and the heartbeat loop.

Both users of Redis, the shared quota (:mod:`snapcrawl.limits.redis`) and distributed jobs
(:mod:`snapcrawl.queue`), import from here and from nowhere else in each other.

- :func:`client` reads the password from the URL or, failing that, from ``REDISCLI_AUTH`` (as ``redis-cli``
  does); ``env:NAME`` instead of a URL reads the whole URL from the environment variable ``NAME``. So no secret
  needs to be on a command line, and none is ever in a message: :func:`where` names only host, port and db.
- :func:`as_error` maps redis-py's exceptions to snapcrawl's: a Redis that answers but refuses to work (wrong
  password, read-only replica, out of memory, no permission) is a :class:`ConfigError`; one that is not there
  is a :class:`TransportError`.
- :func:`script` registers a ``.lua`` file of this package; ``registry.lua`` (the heartbeat set) is prepended
  to the scripts that use it, so that it is written once.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final, Literal

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import ConfigError, SnapcrawlError, TransportError

__all__ = [
    "JOB_PREFIX",
    "PASSWORD_ENV",
    "QUOTA_PREFIX",
    "Heartbeat",
    "as_error",
    "client",
    "refusal",
    "resolve_url",
    "script",
    "server_of",
    "text",
    "unreachable",
    "where",
]

QUOTA_PREFIX: Final = "snapcrawl:quota"
JOB_PREFIX: Final = "snapcrawl:job"
#: The password, when the URL carries none (the variable ``redis-cli`` reads).
PASSWORD_ENV: Final = "REDISCLI_AUTH"  # noqa: S105 - the name of a variable, not a password
_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_UNEXPECTED: Final = re.compile(r"unexpected keyword argument '(?P<name>[^']+)'")

Role = Literal["limiter", "queue"]


def resolve_url(url: str, *, option: str) -> str:
    """The Redis URL of ``option``: ``url`` itself, or the value of ``NAME`` for ``env:NAME``."""
    if url.startswith("env:"):
        name = url[4:]
        value = os.environ.get(name, "")
        if not value:
            raise ConfigError(f"{option} env:{name}: the environment variable {name} is not set")
        url = value
    if not url.startswith(_SCHEMES):
        raise ConfigError(
            f"{option} takes a redis://, rediss:// or unix:// URL (or env:NAME), not {url.split(':', 1)[0]!r}"
        )
    return url


def where(url: str) -> str:
    """The server of ``url`` for messages: host, port and db, never a user name or password."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}{parts.path or '/0'}"


def client(url: str, *, role: Role, option: str | None = None) -> aioredis.Redis:
    """A client for ``url`` (or ``env:NAME``), its password from the URL or ``REDISCLI_AUTH``.

    The limiter's fails fast (no retries, 1 s per call): a slow Redis must cost a request at most that once, and
    the limiter then paces locally. The queue's retries a few times over a blip: it cannot fail open.
    """
    url = resolve_url(url, option=option or role)
    settings: dict[str, object] = (
        {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retry": Retry(NoBackoff(), 0)}
        if role == "limiter"
        else {
            "socket_timeout": 10.0,
            "socket_connect_timeout": 5.0,
            "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), 4),
        }
    )
    password = os.environ.get(PASSWORD_ENV) or None
    try:
        # Options in the URL (its password included) win over these keyword arguments.
        redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            password=password,
            health_check_interval=0,
            **settings,  # type: ignore[arg-type]
        )
        # redis-py takes any query parameter and fails only at the first command, with a TypeError deep in a
        # connection: make one (none is opened), so that a typo is a usage error now.
        redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL for {option or role} ({where(url)}): {exc}") from None
    except TypeError as exc:
        match = _UNEXPECTED.search(str(exc))
        name = match["name"] if match else str(exc)
        raise ConfigError(
            f"invalid Redis URL for {option or role} ({where(url)}): unknown parameter {name!r}"
        ) from None
    return redis


def server_of(redis: aioredis.Redis) -> str:
    """Where a client points, for messages (host:port/db), never its credentials."""
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


_REFUSALS: Final = (
    (("WRONGPASS", "NOAUTH", "INVALID USERNAME-PASSWORD", "AUTHENTICATION"), "refused the credentials (set the "
     f"password in the URL or in {PASSWORD_ENV})"),
    (("READONLY", "READ ONLY REPLICA"), "is a read-only replica (point the URL at the primary)"),
    (("OOM", "OUTOFMEMORY", "MAXMEMORY"), "is out of memory (maxmemory reached): it refuses writes"),
    (("NOPERM", "NOPERMISSION"), "does not allow this user to run the commands snapcrawl needs (ACL NOPERM)"),
    (("WRONGTYPE",), "holds a key of another type where snapcrawl keeps its state (another program's key?)"),
    (("MISCONF",), "cannot persist its data (MISCONF) and refuses writes"),
)  # fmt: skip


def refusal(exc: BaseException) -> str | None:
    """Why a Redis that answered refuses to work, or ``None`` when ``exc`` is not such a refusal.

    redis-py strips the error code from some messages and names it by the exception's class instead.
    """
    if not isinstance(exc, RedisError):
        return None
    message = f"{type(exc).__name__.upper()} {exc}".upper()
    for codes, reason in _REFUSALS:
        if any(code in message for code in codes):
            return reason
    return None


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means that Redis is not there (down, unreachable, too slow), rather than a refusal."""
    return refusal(exc) is None and isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)


def as_error(exc: BaseException, *, server: str, doing: str) -> SnapcrawlError:
    """The snapcrawl error for a Redis failure: a refusal is a :class:`ConfigError`, anything else a
    :class:`TransportError`; both name the server and what was being done, never a secret."""
    reason = refusal(exc)
    if reason is not None:
        return ConfigError(f"Redis at {server} {reason} ({doing})")
    if unreachable(exc):
        return TransportError(f"Redis at {server} unreachable ({doing}): {type(exc).__name__}")
    return TransportError(f"Redis at {server} failed ({doing}): {exc}")


@functools.cache
def _source(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def script(redis: aioredis.Redis, name: str, *, registry: bool = False) -> AsyncScript:
    """Register the Lua script ``name`` (a file of this package); with ``registry`` after ``registry.lua``."""
    source = _source(name)
    if registry:
        source = _source("registry.lua") + "\n" + source
    return redis.register_script(source)


def text(value: bytes | str) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


class Heartbeat:
    """Calls ``beat`` every ``period`` seconds until cancelled, and at once after :meth:`poke`.

    ``beat`` handles its own errors: a missed beat must not end the loop (the limiter then paces locally, the
    worker tries again at the next beat).
    """

    def __init__(self, beat: Callable[[], Awaitable[None]], period: float) -> None:
        self._beat = beat
        self.period = period
        self._poked = anyio.Event()

    def poke(self) -> None:
        """Beat now rather than at the end of the period (something is worth telling Redis at once)."""
        self._poked.set()

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            with anyio.move_on_after(self.period):
                await self._poked.wait()
            self._poked = anyio.Event()
            await self._beat()
