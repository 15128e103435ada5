"""``snapcrawl list``, ``crawl`` and ``demo``: snapshots from the API (or the built-in simulator) to an output."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import anyio

from .._crawler import Crawler
from .._exceptions import AuthError, ConfigError, SinkError, unwrap_group
from .._models import CrawlResult, VolumeFailure
from .._stats import CrawlStats
from ..sinks import DEFAULT_TABLE, AnySink, open_sink, sqlite_path
from ..sinks._partial import PartialFile
from ..sinks.jsonl import JsonLinesWriter
from ..sinks.postgres import redact
from ._common import (
    BURST,
    CONCURRENCY,
    EXIT_AUTH,
    EXIT_FAILURES,
    EXIT_OK,
    RATE,
    SEED,
    VOLUMES,
    DeprecatedAlias,
    add_connection_options,
    add_loop_option,
    echo,
    make_crawler,
)
from ._ids import read_ids, read_ids_as_they_come
from ._signals import stop_on_signal
from .fleet import add_fleet_options, check_fleet_options, run_fleet
from .formats import FormattedSink, SnapshotFormatter, add_output_options
from .job import add_distributed_options, check_distributed_options, make_crawl_crawler, open_job_sink, run_job
from .progress import Progress, status_line, summary_record, summary_text

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``list``, ``crawl`` and ``demo`` commands."""
    one = commands.add_parser("list", help="list one volume's snapshots (JSON Lines, JSON, CSV or a table)")
    one.add_argument("--volume", required=True, metavar="ID", help="volume id")
    one.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    add_output_options(one)
    add_connection_options(one)

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

    demo = commands.add_parser("demo", help="crawl the built-in simulator, started in-process")
    demo.add_argument(
        "--volume-count", dest="volumes", type=VOLUMES, default=3000, metavar="N", help="simulated volumes"
    )
    demo.add_argument("--volumes", dest="volumes", type=VOLUMES, action=DeprecatedAlias, use="--volume-count")
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--out", default="snapcrawl-demo.jsonl", metavar="FILE", help="where the snapshots go")
    demo.add_argument("--concurrency", type=CONCURRENCY, default=64, metavar="N")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--no-faults", action="store_true", help="a perfect server: no latency, no 503s")
    add_loop_option(demo)
    demo.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    demo.add_argument("--log-json", action="store_true")
    add_summary_option(demo)
    one.set_defaults(run=_cmd_list)
    many.set_defaults(run=_cmd_crawl)
    demo.set_defaults(run=_cmd_demo)


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


def add_summary_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the run's summary as JSON: counts, failures and their errors, requests, rate, duration",
    )


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """stdout, or a file that replaces ``path`` only once the listing is complete (see :class:`PartialFile`)."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = PartialFile(path, name=path)
    try:
        yield partial.open()
        partial.replace()
    finally:
        _say_kept(partial.close(), path)


def _say_kept(kept: Path | None, out: str | None) -> None:
    """Tell where the output of a crawl that stopped early went, and that the previous output is untouched."""
    if kept is not None:
        echo(f"snapcrawl: {out} left as it was; this run's partial output is in {kept}")


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


def _shown(out: str | None) -> str | None:
    """The destination as the summary names it: never a password."""
    return redact(out) if out and out.startswith(("postgresql://", "postgres://")) else out


def _printed(args: argparse.Namespace) -> FormattedSink | None:
    """The sink for ``--output``/``--fields`` other than plain JSON Lines: stdout only, and not resumable."""
    output, fields = getattr(args, "output", "jsonl"), getattr(args, "fields", None)
    if output == "jsonl" and fields is None:
        return None
    if args.out not in (None, "-"):
        what = "--fields" if output == "jsonl" else f"--output {output}"
        raise ConfigError(f"{what} prints to stdout (--out -), not to --out {_shown(args.out)}")
    if args.state is not None or args.resume_finished:
        raise ConfigError("--state resumes a JSON Lines file; it cannot resume what --output prints to stdout")
    return FormattedSink(SnapshotFormatter(sys.stdout.buffer, output, fields, terminal=sys.stdout.isatty()))


def _write_summary(path: str, record: dict[str, Any]) -> None:
    try:
        Path(path).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --summary-json {path}: {exc.strerror}") from None


#: After SIGINT or SIGTERM, how long a commit in progress (or the last one) may take before it is given up.
GIVE_UP_SECONDS = 5.0


async def _watch_signals(
    scope: anyio.CancelScope, caught: list[int], sink: AnySink | FormattedSink, lost: list[int]
) -> None:
    """On SIGINT or SIGTERM, remember it and cancel the crawl so that it can stop cleanly; should a commit still
    hold it after :data:`GIVE_UP_SECONDS` (a stalled database), give that commit up."""
    await stop_on_signal(scope, caught)
    await _give_up_after(sink, lost)


async def _give_up_after(sink: AnySink | FormattedSink, lost: list[int]) -> None:
    await anyio.sleep(GIVE_UP_SECONDS)
    if (abandon := getattr(sink, "abandon", None)) is not None:  # printing to stdout commits nothing
        lost.append(abandon())


async def _close(sink: AnySink | FormattedSink, *, interrupted: bool, lost: list[int]) -> None:
    """Commit what was taken and release the destination, even after Ctrl-C; once interrupted, for
    :data:`GIVE_UP_SECONDS` at most."""
    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            if interrupted and not lost:
                tg.start_soon(_give_up_after, sink, lost)
            try:
                await sink.aclose()
            except SinkError:
                if not lost:
                    raise
            tg.cancel_scope.cancel()


def _tell_failures(failures: list[VolumeFailure], *, resumable: bool) -> None:
    """Name each failed volume with its error, and how to retry only those when the crawl has a state file."""
    for failure in failures:
        echo(f"snapcrawl: failed: {failure.where}: {failure.error}")
    if failures and resumable:
        echo("snapcrawl: add --resume-finished to the same command to retry only the failed volumes")


async def _crawl(crawler: Crawler, volume_ids: Any, args: argparse.Namespace, *, total: int | None) -> int:
    show_progress = not args.no_progress and sys.stderr.isatty()
    stats = CrawlStats()
    progress = Progress(stats, total=total, account=volume_ids is None)
    status = status_line()
    caught: list[int] = []
    result: CrawlResult | None = None
    settings = {"endpoint": crawler.endpoint, "name": args.name, "sort": args.sort}
    sink = _printed(args) or open_sink(
        args.out,
        table=args.table,
        prune=args.prune,
        state=args.state,
        settings=settings,
        resume_finished=args.resume_finished,
    )
    lost: list[int] = []  # rows taken but given up, once a stalled commit was abandoned
    try:
        async with crawler, anyio.create_task_group() as tg:
            crawl_scope = anyio.CancelScope()
            tg.start_soon(_watch_signals, crawl_scope, caught, sink, lost)
            if show_progress:
                tg.start_soon(progress.run, status)
            with crawl_scope:
                try:
                    result = await crawler.crawl_into(volume_ids, sink, name=args.name, sort=args.sort, stats=stats)
                except* SinkError:
                    if not lost:
                        raise
            tg.cancel_scope.cancel()
    except BaseException as raised:
        rejected = unwrap_group(raised)
        if args.summary_json is not None and isinstance(rejected, AuthError):  # exit 3: the summary says why
            record = summary_record(
                stats, _shown(args.out), account=volume_ids is None, failures=[], exit_status=EXIT_AUTH, error=rejected
            )
            _write_summary(args.summary_json, record)
        raise
    finally:
        status.clear()
        await _close(sink, interrupted=bool(caught), lost=lost)
        _say_kept(getattr(sink, "kept", None), args.out)  # before any summary: an error prints none
    account, pruned = volume_ids is None, getattr(sink, "pruned", 0)
    echo(summary_text(stats, _shown(args.out), account=account, pruned=pruned))
    if lost:
        echo(
            f"snapcrawl: gave up waiting {GIVE_UP_SECONDS:g} s for the destination: {lost[0]} rows taken were not "
            "committed (the checkpoint does not cover them)"
        )
    failures = result.failures if result is not None else []
    _tell_failures(failures, resumable=args.state is not None)
    exit_status = 128 + caught[0] if caught else EXIT_FAILURES if failures else EXIT_OK
    if caught:
        how = "run the same command again to resume" if sink.resumable else "add --state FILE to make crawls resumable"
        print(f"snapcrawl: interrupted by {signal.Signals(caught[0]).name}; {how}", file=sys.stderr)
    if args.summary_json is not None:
        signame = signal.Signals(caught[0]).name if caught else None
        record = summary_record(
            stats,
            _shown(args.out),
            account=account,
            failures=failures,
            exit_status=exit_status,
            interrupted_by=signame,
            pruned=pruned,
        )
        await anyio.to_thread.run_sync(_write_summary, args.summary_json, record)
    return exit_status


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


async def _cmd_list(args: argparse.Namespace) -> int:
    crawler = make_crawler(args)
    with _output(args.out) as file:
        writer: JsonLinesWriter | SnapshotFormatter = JsonLinesWriter(file)
        if args.output != "jsonl" or args.fields is not None:
            writer = SnapshotFormatter(file, args.output, args.fields, terminal=file.isatty())
        async with crawler:
            batch = []
            async for snapshot in crawler.list_snapshots(args.volume, name=args.name, sort=args.sort):
                batch.append(snapshot)
                if len(batch) >= args.page_size:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
        if isinstance(writer, SnapshotFormatter):
            writer.close()
    return EXIT_OK


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
            return await _crawl(crawler, volume_ids, args, total=total)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from ..simulator import Faults, Simulator  # noqa: PLC0415 - only the demo and simulate need the server side

    # A realistic server by default: some latency, and a few 503s for the retries to absorb.
    faults = Faults() if args.no_faults else Faults(latency=(0.005, 0.03), error_rate=0.01)
    async with Simulator(volumes=args.volumes, seed=args.seed, faults=faults) as sim:
        print(f"snapcrawl: demo simulator at {sim.url} with {args.volumes} volumes", file=sys.stderr)
        crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=args.concurrency)
        args.name = args.sort = args.state = None
        args.table, args.prune, args.resume_finished = DEFAULT_TABLE, False, False
        return await _crawl(crawler, sim.dataset.volume_ids, args, total=len(sim.dataset.volume_ids))
