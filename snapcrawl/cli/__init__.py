"""The ``snapcrawl`` command: one module per command, each with a ``register``.

- ``list`` (:mod:`.list`): one volume's snapshots to stdout or a file.
- ``crawl`` (:mod:`.crawl`): many volumes, or the whole account, into a file or a database; its options beyond
  one process (``--limiter``, ``--queue``) are in :mod:`._distributed`, its many accounts (``--config``) in
  :mod:`.fleet`.
- ``demo`` (:mod:`.demo`): a crawl of the built-in simulator, started in-process.
- ``simulate`` (:mod:`.simulate`): the built-in simulator, served until interrupted.
- ``bench`` (:mod:`.bench`): load-test an endpoint, and re-report saved runs.
- ``job`` (:mod:`.job`): the state and life of distributed jobs.
- ``quota`` (:mod:`.quota`): the shared quota a ``--limiter`` keeps.
- ``migrate`` (:mod:`.migrate`): a 0.2 table given the account columns, explicitly.
- ``completion`` (:mod:`.completion`): the shell completion script.

Shared by several: :mod:`._crawling` (a crawl into an output, for ``crawl`` and ``demo``), :mod:`._common`,
:mod:`.formats` and :mod:`.progress`.

The only place that configures logging (the library only logs). Exit status: 0 all complete, 1 some volumes
failed, 2 usage or configuration error (or a destination in use by another run), 3 credentials rejected,
130/143 interrupted by SIGINT/SIGTERM. Never a traceback for these.
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
from . import bench, completion, crawl, demo, job, migrate, quota, simulate
from . import list as list_
from ._common import EXIT_AUTH, EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Parser, configure_logging, echo, use_uvloop
from .progress import status_line

__all__ = ["build_parser", "flag", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``snapcrawl`` command."""
    parser = Parser(prog="snapcrawl", description="Crawl the SCP Virtual Server 'List snapshots' API.")
    parser.add_argument("--version", action="version", version=f"snapcrawl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (list_, crawl, demo, bench, simulate, job, quota, migrate, completion):
        command.register(commands)
    parser.set_defaults(root_parser=parser)  # for `completion`, which describes the whole command line
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
            echo(f"snapcrawl: error: {exc.render(flag)}")
            return EXIT_USAGE
        if isinstance(exc, AuthError):
            echo(f"snapcrawl: {exc.render(flag)}")
            return EXIT_AUTH
        if isinstance(exc, SnapcrawlError | OSError):
            echo(f"snapcrawl: failed: {exc.render(flag) if isinstance(exc, SnapcrawlError) else _os_failure(exc)}")
            return EXIT_FAILURES
        if isinstance(exc, KeyboardInterrupt):
            print("snapcrawl: interrupted", file=sys.stderr)
            return 130
        raise
    return status


#: Library parameters that no flag sets (the CLI always sends them): named as they are.
_NO_FLAG: Final = frozenset({"with_count"})


def flag(option: str) -> str:
    """The flag that sets the library parameter ``option`` (``page_size`` -> ``--page-size``): errors name
    parameters, and this is the one place the command line turns them into its own spelling."""
    return option if option in _NO_FLAG else "--" + option.replace("_", "-")


#: Which error of several (workers failing at once) decides the exit status: the first kind listed wins.
_PRECEDENCE: Final = (BrokenPipeError, KeyboardInterrupt, ConfigError, AuthError, SinkError, SnapcrawlError, OSError)


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


def _os_failure(exc: OSError) -> str:
    """An I/O error of the host (stdout on a full disk) in one line, never a traceback; if stdout is what failed,
    it is pointed at /dev/null so that Python's own flush at exit does not report it a second time."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc.strerror or exc)


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (what ``| head`` does once it has its lines)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll on this platform, or stdout replaced or closed
        return False
