"""The ``snapcrawl`` command: ``list``, ``crawl``, ``demo``, ``bench``, ``simulate``, ``job`` and ``completion``.

The only place that configures structlog. Exit status: 0 all complete, 1 some volumes failed, 2 usage or
configuration error, 3 credentials rejected, 130/143 interrupted by SIGINT/SIGTERM. Never a traceback for these.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from typing import Final

import anyio

from .. import __version__
from .._exceptions import AuthError, ConfigError, SinkError, SnapcrawlError, unwrap_group
from . import bench, completion, crawl, job, migrate, quota, simulate
from ._common import EXIT_AUTH, EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Parser, configure_logging, echo, use_uvloop
from .progress import status_line

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``snapcrawl`` command."""
    parser = Parser(prog="snapcrawl", description="Crawl the SCP Virtual Server 'List snapshots' API.")
    parser.add_argument("--version", action="version", version=f"snapcrawl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (crawl, bench, simulate, job, quota, migrate, completion):
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    # One status line on this process's stderr, shared by the log and the progress display.
    configure_logging(
        getattr(args, "log_level", "warning"), json=getattr(args, "log_json", False), stream=status_line(sys.stderr)
    )
    try:
        uvloop = use_uvloop(getattr(args, "loop", "asyncio"))
        status: int = anyio.run(args.run, args, backend_options={"use_uvloop": uvloop})
    except BaseException as raised:  # mapped to exit statuses below, or re-raised
        exc = _leading(raised)
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, SinkError) and _stdout_gone()):
            # The reader of stdout went away (e.g. `| head`): not an error of ours.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        if isinstance(exc, ConfigError):
            echo(f"snapcrawl: error: {exc}")
            return EXIT_USAGE
        if isinstance(exc, AuthError):
            echo(f"snapcrawl: {exc}")
            return EXIT_AUTH
        if isinstance(exc, SnapcrawlError):
            echo(f"snapcrawl: failed: {exc}")
            return EXIT_FAILURES
        if isinstance(exc, KeyboardInterrupt):
            print("snapcrawl: interrupted", file=sys.stderr)
            return 130
        raise
    return status


#: Which error of several (workers failing at once) decides the exit status: the first kind listed wins.
_PRECEDENCE: Final = (BrokenPipeError, KeyboardInterrupt, ConfigError, AuthError, SinkError, SnapcrawlError)


def _leading(raised: BaseException) -> BaseException:
    """The error that stands for ``raised``: itself, or of an exception group (every worker whose sink failed
    raises the same error), the first by :data:`_PRECEDENCE`; a group holding anything else stays as it is."""
    exc = unwrap_group(raised)
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    groups = [exc]
    while groups:
        for member in groups.pop().exceptions:
            if isinstance(member, BaseExceptionGroup):
                groups.append(member)
            else:
                leaves.append(member)
    if not all(isinstance(leaf, _PRECEDENCE) for leaf in leaves):
        return exc  # something unforeseen: shown whole
    return min(leaves, key=lambda leaf: next(i for i, kind in enumerate(_PRECEDENCE) if isinstance(leaf, kind)))


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (what ``| head`` does once it has its lines)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll on this platform, or stdout replaced or closed
        return False
