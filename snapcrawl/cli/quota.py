"""``snapcrawl quota status|reset --limiter URL``: what the shared quota's keys hold, and clearing them.

A key holds the rate in force for every process sharing the quota, the rate told (``--rate``), the discovery
policy's memory and the processes alive; it outlives a run by a day, so the next run starts from it. ``reset``
clears it: the next run starts afresh (from its ``--rate``, or discovering).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .._config import load_credentials, resolve_endpoint
from .._exceptions import ConfigError
from ._common import EXIT_OK, echo

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..limits.redis import QuotaState

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``quota`` command: ``status`` and ``reset``."""
    quota = commands.add_parser("quota", help="the shared quota (--limiter): what Redis holds, and clearing it")
    actions = quota.add_subparsers(dest="quota_command", required=True, parser_class=type(quota))
    for name, text, run in (
        ("status", "the rate in force, the rate told, the processes alive (every key, or one)", _cmd_status),
        ("reset", "clear a key: the next run starts from its --rate, or discovers the quota afresh", _cmd_reset),
    ):
        parser = actions.add_parser(name, help=text)
        parser.add_argument(
            "--limiter",
            required=True,
            metavar="URL",
            help="the quota's Redis: redis://HOST:PORT/DB, or env:NAME (password also from REDISCLI_AUTH)",
        )
        which = parser.add_argument_group("which key (default for status: every key)")
        which.add_argument("--key", help="the key itself, as status prints it")
        which.add_argument("--endpoint", metavar="URL", help="the key of this endpoint and SCP_ACCESS_KEY")
        which.add_argument("--region", help="build the endpoint from a region, e.g. kr-west1")
        which.add_argument("--env", dest="environment", choices=("s", "g", "e"), help="environment of --region")
        if name == "status":
            parser.add_argument("--json", action="store_true", help="one JSON object per key instead of text")
        else:
            which.add_argument("--all", action="store_true", help="every quota key in this Redis")
        parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
        parser.add_argument("--log-json", action="store_true")
        parser.set_defaults(run=run)


def _chosen_key(args: argparse.Namespace) -> str | None:
    """The key ``--key`` or the endpoint options name; ``None`` if none is chosen."""
    from ..limits.redis import quota_key  # noqa: PLC0415 - the redis extra is optional

    if args.key is not None:
        return str(args.key)
    if args.endpoint is None and args.region is None:
        return None
    endpoint = resolve_endpoint(args.endpoint, region=args.region, environment=args.environment)
    return quota_key(endpoint, load_credentials().access_key)


async def _all_keys(redis: aioredis.Redis) -> list[str]:
    from .. import _redis  # noqa: PLC0415 - the redis extra is optional

    keys = {_redis.text(key) async for key in redis.scan_iter(match=f"{_redis.QUOTA_PREFIX}:*", count=1000)}
    return sorted(key for key in keys if not key.endswith(":processes"))


async def _cmd_status(args: argparse.Namespace) -> int:
    from .. import _redis  # noqa: PLC0415 - the redis extra is optional
    from ..limits.redis import RedisLimiter, read_quota_state  # noqa: PLC0415

    chosen = _chosen_key(args)
    redis = _redis.client(args.limiter, role="limiter", option="--limiter")
    alive = RedisLimiter.ALIVE_PERIODS * 1.0
    try:
        try:
            keys = [chosen] if chosen is not None else await _all_keys(redis)
            states = [await read_quota_state(redis, key, alive=alive) for key in keys]
        except Exception as exc:
            raise _redis.as_error(exc, server=_redis.server_of(redis), doing="read the quota") from None
    finally:
        await redis.aclose()
    if chosen is not None and states == [None]:
        raise ConfigError(f"the quota key {chosen!r} holds nothing (no run has used it lately)")
    found = [state for state in states if state is not None]
    for state in found:
        if args.json:
            print(json.dumps(state.as_dict(), sort_keys=True))
        else:
            for line in _describe(state).splitlines():
                echo(line, stdout=True)
    if not found and not args.json:
        print("no shared quota keys", file=sys.stderr)
    return EXIT_OK


def _describe(state: QuotaState) -> str:
    def rate(value: float | None) -> str:
        return "none" if value is None else f"{value:.2f}/s"

    return (
        f"{state.key}\n  rate in force  {rate(state.rate)}\n  told           {rate(state.cap)}\n"
        f"  estimate       {rate(state.estimate)}\n  processes      {len(state.processes)}"
        + "".join(f"\n    {process}" for process in state.processes)
        + f"\n  expires in     {state.ttl} s"
    )


async def _cmd_reset(args: argparse.Namespace) -> int:
    from .. import _redis  # noqa: PLC0415 - the redis extra is optional

    chosen = _chosen_key(args)
    if chosen is None and not args.all:
        raise ConfigError("quota reset needs --key, --endpoint (or --region), or --all")
    redis = _redis.client(args.limiter, role="limiter", option="--limiter")
    try:
        try:
            keys = [chosen] if chosen is not None else await _all_keys(redis)
            deleted = await redis.delete(*keys, *(f"{key}:processes" for key in keys)) if keys else 0
        except Exception as exc:
            raise _redis.as_error(exc, server=_redis.server_of(redis), doing="reset the quota") from None
    finally:
        await redis.aclose()
    if chosen is not None and not deleted:
        raise ConfigError(f"the quota key {chosen!r} holds nothing: nothing to reset")
    for key in keys:
        echo(f"snapcrawl: reset {key}")
    return EXIT_OK
