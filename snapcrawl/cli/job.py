"""``snapcrawl job status|list|delete|retry``: the state and life of distributed jobs (the crawl command's
options that start and join them live in :mod:`._distributed`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ._common import EXIT_FAILURES, EXIT_OK, echo
from .progress import plural

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..queue import JobQueue, JobStatus


__all__ = ["register"]

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
