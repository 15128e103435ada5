"""``snapcrawl crawl``: many volumes (or the whole account) concurrently, into a file, a database or stdout."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from .._exceptions import ConfigError
from ..sinks import DEFAULT_TABLE, sqlite_path
from ._common import BURST, CONCURRENCY, RATE, DeprecatedAlias, add_connection_options, add_loop_option
from ._crawling import add_summary_option, run_crawl
from ._distributed import add_distributed_options, check_distributed_options, make_crawl_crawler, open_job_sink, run_job
from ._ids import read_ids, read_ids_as_they_come
from .fleet import add_fleet_options, check_fleet_options, run_fleet
from .formats import add_output_options

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``crawl`` command."""
    many = commands.add_parser("crawl", help="crawl many volumes (or the whole account) concurrently")
    source = many.add_argument_group("volumes (default: every snapshot of the account)")
    source.add_argument(
        "--volumes-from", dest="volumes", metavar="FILE", help="a file of volume ids, one a line; - for stdin"
    )
    source.add_argument("--volumes", dest="volumes", action=DeprecatedAlias, use="--volumes-from")
    source.add_argument("--volume", action="append", default=[], metavar="ID", help="a volume id (repeatable)")
    add_connection_options(many)
    _add_crawl_options(many)
    add_distributed_options(many)
    add_fleet_options(many)
    many.set_defaults(run=_cmd_crawl)


def _add_crawl_options(parser: argparse.ArgumentParser) -> None:
    crawl = parser.add_argument_group("crawl")
    crawl.add_argument(
        "--out",
        metavar="DEST",
        help="a JSON Lines file (default: stdout, also -), sqlite:///FILE.db or postgresql://USER@HOST:PORT/DB",
    )
    crawl.add_argument("--table", default=DEFAULT_TABLE, metavar="NAME", help="database table (default snapshots)")
    crawl.add_argument(
        "--prune",
        action="store_true",
        help="database: delete rows of completely crawled volumes this crawl did not see",
    )
    crawl.add_argument(
        "--concurrency", type=CONCURRENCY, default=64, metavar="N", help="requests in flight, 1..10000 (default 64)"
    )
    crawl.add_argument("--rate", type=RATE, metavar="R", help="requests/s cap, 0.01..100000 (default: none)")
    crawl.add_argument("--burst", type=BURST, default=10, metavar="N", help="with --rate (default 10)")
    crawl.add_argument("--no-progress", action="store_true", help="no live progress line on stderr")
    add_loop_option(crawl)
    crawl.add_argument(
        "--state",
        metavar="FILE",
        help="JSON Lines: a checkpoint file, so a crawl that stopped early resumes where it stopped when run "
        "again (a database keeps its own)",
    )
    crawl.add_argument(
        "--resume-finished",
        action="store_true",
        help="with --state: resume even a crawl that ran to its end, skipping its complete volumes and retrying its "
        "failed ones (default: the same command after a finished crawl starts a new one)",
    )
    add_summary_option(crawl)
    printed = parser.add_argument_group("printing to stdout (--out -)")
    add_output_options(printed)


def _check_distinct(args: argparse.Namespace) -> None:
    """Refuse a run whose output, state file, volume file and summary are one file (a symbolic or hard link too),
    and a summary that could not be written: both before anything is fetched, not after the crawl."""
    summary = getattr(args, "summary_json", None)
    files = {"--out": args.out, "--state": args.state, "--volumes-from": args.volumes, "--summary-json": summary}
    if summary is not None and not os.access(os.path.dirname(os.path.abspath(summary)), os.W_OK):
        raise ConfigError(f"cannot write --summary-json {summary}: its directory is missing or not writable")
    if args.out is not None and args.out.startswith("sqlite://"):
        files["--out"] = sqlite_path(args.out)
    elif args.out is not None and "://" in args.out:
        files["--out"] = None
    seen: dict[object, str] = {}
    for option, value in files.items():
        if value is None or value == "-":
            continue
        try:
            found = os.stat(value)
            key: object = (found.st_dev, found.st_ino)
        except OSError:  # not there yet: where it would be created
            key = os.path.realpath(value)
        if (other := seen.setdefault(key, option)) != option:
            raise ConfigError(f"{other} and {option} are the same file ({value}): each needs its own")


def _volume_source(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[Any, int | None]:
    """The volume ids to crawl (lazily read) and their number, when known up front."""
    if args.volumes is None:
        return (args.volume or None), (len(set(args.volume)) or None)
    if args.volumes == "-":
        if (fd := _pipe_or_terminal(sys.stdin)) is None:  # `< file` (or a stream in memory): it never waits
            return itertools.chain(args.volume, read_ids(sys.stdin)), None
        return _chain(args.volume, read_ids_as_they_come(fd)), None
    path = Path(args.volumes)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or <(cmd): read as the ids arrive, like stdin
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, fd)
            return _chain(args.volume, read_ids_as_they_come(fd, name=str(path))), None
        # Counting reads the file twice: only a regular file can be read twice.
        with path.open(encoding="utf-8") as counting:
            total = sum(1 for _ in read_ids(counting))
        lines = stack.enter_context(path.open(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read volume ids from {path}: {exc.strerror}") from None
    if args.volume:
        return itertools.chain(args.volume, read_ids(lines)), total + len(args.volume)
    return read_ids(lines), total


def _pipe_or_terminal(stream: IO[str]) -> int | None:
    """The descriptor of a stream that may keep a reader waiting (not a regular file), else ``None``."""
    try:
        fd = stream.fileno()
        return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
    except (OSError, ValueError):  # io.UnsupportedOperation: no descriptor, a stream in memory
        return None


async def _chain(first: list[str], rest: AsyncIterator[str]) -> AsyncIterator[str]:
    """``first``, then the ids of ``rest`` as they come."""
    for volume_id in first:
        yield volume_id
    async for volume_id in rest:
        yield volume_id


async def _cmd_crawl(args: argparse.Namespace) -> int:
    check_fleet_options(args)
    check_distributed_options(args)
    _check_distinct(args)
    if args.queue is not None and (args.summary_json is not None or args.output != "jsonl" or args.fields is not None):
        raise ConfigError("--summary-json, --output and --fields do not apply to --queue workers")
    async with contextlib.AsyncExitStack() as distributed:  # the shared limiter (--limiter), if any
        if args.config is not None:  # many accounts at once (--config)
            return await run_fleet(args, distributed)
        with contextlib.ExitStack() as stack:
            volume_ids, total = _volume_source(args, stack)
            crawler = await make_crawl_crawler(args, distributed)
            if args.queue is not None:  # a worker of a distributed job (--queue, --job)
                return await run_job(args, crawler, volume_ids, open_job_sink(args, crawler), distributed)
            return await run_crawl(crawler, volume_ids, args, total=total)
