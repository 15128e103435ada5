"""``snapcrawl job status|list|delete|retry``, and the crawl command's ``--limiter``, ``--queue``, ``--job``,
``--claim-after``, ``--max-deliveries`` and ``--keep-finished``.

The crawl command adds the options with :func:`add_distributed_options`, checks them with
:func:`check_distributed_options`, and opens the shared limiter and the queue worker with :func:`open_limiter`
and :func:`open_worker` on its exit stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
    from collections.abc import AsyncIterator

    from ..limits.redis import RedisLimiter
    from ..queue import JobQueue, JobStatus, Worker

__all__ = [
    "add_distributed_options",
    "check_distributed_options",
    "make_crawl_crawler",
    "open_job_sink",
    "open_limiter",
    "open_worker",
    "register",
    "report_job",
    "run_job",
]

_DATABASE_SCHEMES = ("postgresql://", "postgres://")
MAX_DELIVERIES = bounded(1, 1000, integer=True)
KEEP_FINISHED = bounded(1, 3650 * 86_400, integer=True)  # up to ten years


_URL_HELP = "the jobs' Redis: redis://[:PASSWORD@]HOST:PORT/DB, or env:NAME (password also from REDISCLI_AUTH)"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``job`` command: ``status``, ``list``, ``delete`` and ``retry``."""
    job = commands.add_parser("job", help="distributed crawls: the state and life of jobs")
    actions = job.add_subparsers(dest="job_command", required=True, parser_class=type(job))

    def action(name: str, text: str, run: Any, *, named: bool = True) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text)
        parser.add_argument("--queue", required=True, metavar="URL", help=_URL_HELP)
        if named:
            parser.add_argument("--job", required=True, metavar="NAME", help="the job's name")
        parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
        parser.add_argument("--log-json", action="store_true")
        parser.set_defaults(run=run)
        return parser

    status = action("status", "volumes pending, in progress, done and failed; workers alive", _cmd_status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    listing = action("list", "every job in this Redis, with its state", _cmd_list, named=False)
    listing.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    delete = action("delete", "delete a job's keys (refused while a worker is alive, unless --force)", _cmd_delete)
    delete.add_argument("--force", action="store_true", help="delete even while workers are alive")
    retry = action("retry", "requeue dead-lettered volumes; a worker started on the job crawls them", _cmd_retry)
    retry.add_argument(
        "--volume", action="append", default=[], metavar="ID", help="only this volume (repeatable; default all)"
    )


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


@contextlib.asynccontextmanager
async def _existing_job(args: argparse.Namespace) -> AsyncIterator[JobQueue]:
    """The queue of ``--job``, which must exist (else a ConfigError naming it: exit 2)."""
    from ..queue import JobQueue  # noqa: PLC0415 - the redis extra is optional

    queue = JobQueue(args.queue, args.job, option="--queue")
    try:
        await queue.require()
        yield queue
    finally:
        await queue.aclose()


def _describe(status: JobStatus) -> str:
    """The job's state in words: what a user should know, and do."""
    if status.state == "finished":
        expiry = "" if status.expires_in is None else f", keys expire in {_duration(status.expires_in)}"
        return f"finished{expiry}"
    if status.state == "running":
        return "running"
    left = status.pending + status.in_progress
    if status.state == "waiting":
        return f"waiting: {plural(left, 'volume')} and no worker has joined yet"
    seen = "" if status.last_seen is None else f" (last heartbeat {_duration(status.last_seen)} ago)"
    return (
        f"abandoned: {plural(left, 'volume')} left and no worker alive{seen}; run a crawl with --job {status.job} "
        "to resume"
    )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"


async def _cmd_status(args: argparse.Namespace) -> int:
    async with _existing_job(args) as queue:
        status = await queue.status()
    if args.json:
        print(json.dumps(status.as_dict(), sort_keys=True))
        return EXIT_OK
    echo(f"job {status.job}: {_describe(status)}, {plural(status.total, 'volume')}", stdout=True)
    print(f"  pending      {status.pending}")
    print(f"  in progress  {status.in_progress}")
    print(f"  done         {status.done}")
    print(f"  failed       {len(status.failed)}")
    for volume, error in sorted(status.failed.items()):
        echo(f"    {volume}: {error}", stdout=True)
    print(f"  workers      {len(status.workers)}")
    for worker in status.workers:
        echo(f"    {worker}", stdout=True)
    return EXIT_OK


async def _cmd_list(args: argparse.Namespace) -> int:
    from .._redis import client  # noqa: PLC0415 - the redis extra is optional
    from ..queue import JobQueue, list_jobs  # noqa: PLC0415

    redis = client(args.queue, role="queue", option="--queue")
    try:
        statuses = [await JobQueue(redis, name).status() for name in await list_jobs(redis)]
    finally:
        await redis.aclose()
    for status in statuses:
        if args.json:
            print(json.dumps(status.as_dict(), sort_keys=True))
        else:
            finished = status.done + len(status.failed)
            echo(f"{status.job}  {finished}/{plural(status.total, 'volume')}  {_describe(status)}", stdout=True)
    if not statuses and not args.json:
        print("no jobs", file=sys.stderr)
    return EXIT_OK


async def _cmd_delete(args: argparse.Namespace) -> int:
    async with _existing_job(args) as queue:
        status = await queue.status()
        if status.workers and not args.force:
            raise ConfigError(
                f"job {args.job} has {plural(len(status.workers), 'worker')} alive: stop them first, or add --force"
            )
        deleted = await queue.delete()
    print(f"snapcrawl: job {args.job} deleted ({plural(deleted, 'key')})", file=sys.stderr)
    return EXIT_OK


async def _cmd_retry(args: argparse.Namespace) -> int:
    async with _existing_job(args) as queue:
        requeued = await queue.retry(args.volume)
        status = await queue.status()
    missing = sorted(set(args.volume) - set(requeued))
    print(f"snapcrawl: job {args.job}: {plural(len(requeued), 'dead-lettered volume')} requeued", file=sys.stderr)
    for volume in missing:
        echo(f"snapcrawl: volume {volume} is not dead-lettered in job {args.job}: not requeued")
    if requeued and not status.workers:
        print(f"snapcrawl: no worker is alive: run a crawl with --job {args.job} to crawl them", file=sys.stderr)
    return EXIT_FAILURES if missing else EXIT_OK
