"""What a Redis URL may hold: redis-py takes any query parameter and fails only at the first command, with a
``TypeError`` deep in a connection. Checked when the client is made, so a typo is a usage error (exit 2)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._exceptions import ConfigError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["check_redis_client"]

_UNEXPECTED = re.compile(r"unexpected keyword argument '(?P<name>[^']+)'")


def check_redis_client(client: aioredis.Redis) -> aioredis.Redis:
    """``client`` if a connection can be made from its URL's parameters (none is opened), else a ConfigError."""
    try:
        client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    except TypeError as exc:
        match = _UNEXPECTED.search(str(exc))
        name = match["name"] if match else str(exc)
        raise ConfigError(f"invalid Redis URL: unknown parameter {name!r}") from None
    return client
