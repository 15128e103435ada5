"""The ``snapcrawl`` command: ``list``, ``crawl``, ``demo``, ``bench``, ``simulate``, ``job`` and ``completion``.

The only place that configures structlog. Exit status: 0 all complete, 1 some volumes failed, 2 usage or
configuration error, 3 credentials rejected, 130/143 interrupted by SIGINT/SIGTERM. Never a traceback for these.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import anyio

from .. import __version__
from .._exceptions import AuthError, ConfigError, SnapcrawlError, unwrap_group
from . import bench, completion, crawl, job, migrate, simulate
from ._common import EXIT_AUTH, EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Parser, configure_logging, use_uvloop
from .progress import status_line

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``snapcrawl`` command."""
    parser = Parser(prog="snapcrawl", description="Crawl the SCP Virtual Server 'List snapshots' API.")
    parser.add_argument("--version", action="version", version=f"snapcrawl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (crawl, bench, simulate, job, migrate, completion):
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
        exc = unwrap_group(raised)
        if isinstance(exc, ConfigError):
            print(f"snapcrawl: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, AuthError):
            print(f"snapcrawl: {exc}", file=sys.stderr)
            return EXIT_AUTH
        if isinstance(exc, SnapcrawlError):
            print(f"snapcrawl: failed: {exc}", file=sys.stderr)
            return EXIT_FAILURES
        if isinstance(exc, KeyboardInterrupt):
            print("snapcrawl: interrupted", file=sys.stderr)
            return 130
        if isinstance(exc, BrokenPipeError):
            # The reader of stdout went away (e.g. `| head`): not an error of ours.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        raise
    return status
