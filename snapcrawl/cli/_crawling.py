"""What ``crawl`` and ``demo`` share: a crawl into an output with progress, signals, failures and a summary; and
``list``'s output file, replaced only once complete."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from .._crawler import Crawler
from .._exceptions import AuthError, ConfigError, SinkError, unwrap_group
from .._models import CrawlResult, VolumeFailure
from .._stats import CrawlStats
from ..sinks import AnySink, open_sink
from ..sinks._partial import PartialFile
from ..sinks.postgres import redact
from ._common import EXIT_AUTH, EXIT_FAILURES, EXIT_OK, echo
from ._signals import stop_on_signal
from .formats import FormattedSink, SnapshotFormatter
from .progress import Progress, status_line, summary_record, summary_text

__all__ = ["GIVE_UP_SECONDS", "add_summary_option", "open_output", "run_crawl"]


def add_summary_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the run's summary as JSON: counts, failures and their errors, requests, rate, duration",
    )


@contextlib.contextmanager
def open_output(path: str | None) -> Iterator[BinaryIO]:
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


async def run_crawl(crawler: Crawler, volume_ids: Any, args: argparse.Namespace, *, total: int | None) -> int:
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
