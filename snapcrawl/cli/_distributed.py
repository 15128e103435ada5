"""The crawl command's options beyond one process: ``--limiter``, ``--queue``, ``--job``, ``--claim-after``,
``--max-deliveries`` and ``--keep-finished``.

The crawl command adds the options with :func:`add_distributed_options`, checks them with
:func:`check_distributed_options`, and opens the shared limiter and the queue worker with :func:`open_limiter`
and :func:`open_worker` on its exit stack.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

import anyio

from .._config import load_credentials, resolve_endpoint
from .._crawler import Crawler
from .._exceptions import ConfigError
from .._identity import default_account, endpoint_host
from ..sinks import Sink
from ._common import CLAIM_AFTER, EXIT_FAILURES, EXIT_OK, bounded, echo, make_crawler
from ._signals import stop_on_signal
from .progress import plural, times

if TYPE_CHECKING:
    from ..limits.redis import RedisLimiter
    from ..queue import Worker


__all__ = [
    "add_distributed_options",
    "check_distributed_options",
    "make_crawl_crawler",
    "open_job_sink",
    "open_limiter",
    "open_worker",
    "report_job",
    "run_job",
]

_DATABASE_SCHEMES = ("postgresql://", "postgres://")
MAX_DELIVERIES = bounded(1, 1000, integer=True)
KEEP_FINISHED = bounded(1, 3650 * 86_400, integer=True)  # up to ten years


def add_distributed_options(parser: argparse.ArgumentParser) -> None:
    """The crawl command's options for a shared quota and distributed jobs."""
    group = parser.add_argument_group("beyond one process (Redis)")
    group.add_argument(
        "--limiter",
        metavar="URL",
        help="share one quota (--rate, or the discovered rate) with every process using this Redis: "
        "redis://HOST:PORT/DB, or env:NAME (password also from REDISCLI_AUTH)",
    )
    group.add_argument(
        "--queue",
        metavar="URL",
        help="take volumes from a distributed job in this Redis (needs --job and a database --out); env:NAME reads "
        "the URL from NAME",
    )
    group.add_argument("--job", metavar="NAME", help="the job's name: every worker of one crawl uses the same")
    group.add_argument(
        "--claim-after",
        type=CLAIM_AFTER,
        metavar="S",
        help="take over volumes another worker has held this long without a heartbeat (default 60)",
    )
    group.add_argument(
        "--max-deliveries",
        type=MAX_DELIVERIES,
        metavar="N",
        help="dead-letter a volume after it was handed out this many times (default 3; see job retry)",
    )
    group.add_argument(
        "--keep-finished",
        type=KEEP_FINISHED,
        metavar="S",
        help="a finished job's keys expire after this many seconds (default 604800: a week)",
    )


def check_distributed_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) for option combinations that cannot work."""
    queue, job = getattr(args, "queue", None), getattr(args, "job", None)
    if (queue is None) != (job is None):
        raise ConfigError("--queue and --job go together: the job's Redis and the job's name")
    if queue is None:
        for option in ("claim_after", "max_deliveries", "keep_finished"):
            if getattr(args, option, None) is not None:
                raise ConfigError(f"--{option.replace('_', '-')} needs --queue and --job")
        return
    out = getattr(args, "out", None)
    if out is None or not out.startswith(_DATABASE_SCHEMES):
        raise ConfigError(
            "--queue needs --out postgresql://...: workers on several machines write one shared table "
            f"(not {'stdout' if out in (None, '-') else 'the local file ' + repr(out)})"
        )
    if getattr(args, "state", None) is not None:
        raise ConfigError("--state does not go with --queue: the job and the database keep the progress")


async def open_limiter(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack, *, endpoint: str, access_key: str
) -> RedisLimiter | None:
    """The shared limiter of ``--limiter`` (with ``--rate``/``--burst``), entered on ``stack``; None without it."""
    if getattr(args, "limiter", None) is None:
        return None
    from ..limits.redis import RedisLimiter  # noqa: PLC0415 - the redis extra is optional

    limiter = RedisLimiter(
        args.limiter, endpoint=endpoint, access_key=access_key, rate=args.rate, burst=args.burst, option="--limiter"
    )
    await stack.enter_async_context(limiter)
    stack.callback(_print_limiter_summary, limiter)
    return limiter


async def make_crawl_crawler(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> Crawler:
    """The crawler of ``snapcrawl crawl``: paced by the shared limiter with ``--limiter``, else by ``--rate``."""
    if getattr(args, "limiter", None) is None:
        return make_crawler(args, concurrency=args.concurrency, rate_limit=args.rate, burst=args.burst)
    endpoint = resolve_endpoint(args.endpoint, region=args.region, environment=args.environment)
    credentials = load_credentials()
    limiter = await open_limiter(args, stack, endpoint=endpoint, access_key=credentials.access_key)
    return make_crawler(args, endpoint=endpoint, credentials=credentials, concurrency=args.concurrency, limiter=limiter)


def _print_limiter_summary(limiter: RedisLimiter) -> None:
    stats = limiter.stats
    outage = f", Redis unavailable {times(stats.fallbacks)}" if stats.fallbacks else ""
    print(
        f"snapcrawl: shared quota {limiter.key}: {plural(stats.granted_shared, 'request')} paced through Redis in "
        f"{plural(stats.redis_calls, 'call')} ({plural(stats.leases, 'lease')}), {stats.granted_local} locally{outage}",
        file=sys.stderr,
    )


async def open_worker(args: argparse.Namespace, stack: contextlib.AsyncExitStack, volume_ids: Any) -> Worker | None:
    """A worker of ``--job`` in ``--queue``, entered on ``stack``, after enqueuing ``volume_ids`` (if any)."""
    if getattr(args, "queue", None) is None:
        return None
    from ..queue import (  # noqa: PLC0415 - the redis extra is optional
        DEFAULT_CLAIM_AFTER,
        DEFAULT_KEEP_FINISHED,
        DEFAULT_MAX_DELIVERIES,
        JobQueue,
        Worker,
    )

    queue = JobQueue(
        args.queue,
        args.job,
        max_deliveries=args.max_deliveries or DEFAULT_MAX_DELIVERIES,
        keep_finished=args.keep_finished or DEFAULT_KEEP_FINISHED,
        option="--queue",
    )
    stack.push_async_callback(queue.aclose)
    if volume_ids is not None:
        await queue.enqueue(volume_ids)
    claim_after = args.claim_after if args.claim_after is not None else DEFAULT_CLAIM_AFTER
    return await stack.enter_async_context(Worker(queue, claim_after=claim_after))


def open_job_sink(args: argparse.Namespace, crawler: Crawler) -> Sink:
    """The job's shared PostgreSQL inventory (``--out postgresql://...``), its lock shared by the job's workers.

    The job's name is part of the crawl's identity in the database, so its progress is apart from other crawls'.
    """
    from ..sinks import PostgresSink  # noqa: PLC0415 - the postgres extra is optional

    settings = {"endpoint": crawler.endpoint, "name": args.name, "sort": args.sort, "job": args.job}
    account = default_account(crawler.endpoint, crawler.credentials.access_key)
    return PostgresSink(
        args.out,
        table=args.table,
        prune=args.prune,
        settings=settings,
        shared=True,
        account=account,
        endpoint=endpoint_host(crawler.endpoint),
    )


async def run_job(
    args: argparse.Namespace, crawler: Crawler, volume_ids: Any, sink: Sink, stack: contextlib.AsyncExitStack
) -> int:
    """One worker of ``--job``: enqueue ``volume_ids`` (if given), crawl what the queue hands out into ``sink``
    (acknowledging volumes as it commits them) until the job is complete; the job's exit status.

    SIGINT/SIGTERM stop it cleanly: what was written is committed (and acknowledged); the volumes it still
    held are claimed by the other workers after ``--claim-after``.
    """
    worker = await open_worker(args, stack, volume_ids)
    assert worker is not None  # noqa: S101 - run only with --queue
    acking = worker.sink(sink)
    caught: list[int] = []
    try:
        async with crawler, anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(stop_on_signal, scope, caught)
            with scope:  # the crawl tells the sink complete() if it ran to its end: the job is done
                await crawler.crawl_into(worker.volumes(), acking, name=args.name, sort=args.sort)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await acking.aclose()
    if caught:
        print(
            f"snapcrawl: interrupted by {signal.Signals(caught[0]).name}; the job goes on with its other workers "
            "(run the same command again to rejoin it)",
            file=sys.stderr,
        )
        return 128 + caught[0]
    return await report_job(worker)


async def report_job(worker: Worker) -> int:
    """After a worker's crawl: print the job's outcome; exit 1 if the job has failed (dead-lettered) volumes."""
    status = await worker.queue.status()
    print(
        f"snapcrawl: job {status.job}: {status.done} of {plural(status.total, 'volume')} done, "
        f"{len(status.failed)} failed (this worker took {worker.taken}, claimed {worker.claimed})",
        file=sys.stderr,
    )
    for volume, error in sorted(status.failed.items()):
        echo(f"snapcrawl: failed: volume {volume}: {error}")
    return EXIT_FAILURES if status.failed else EXIT_OK
