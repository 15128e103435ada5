"""What every command shares: the argument parser's habits, option groups, logging set-up and exit codes."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn, TextIO

import structlog

from .._config import API_VERSIONS, DEFAULT_API_VERSION, RetryPolicy, load_credentials, resolve_endpoint
from .._crawler import Crawler
from .._exceptions import ConfigError
from .._text import printable
from .progress import StatusLine, status_line

__all__ = [
    "BURST",
    "BYTES",
    "CLAIM_AFTER",
    "CONCURRENCY",
    "COUNT",
    "EXIT_AUTH",
    "EXIT_FAILURES",
    "EXIT_OK",
    "EXIT_USAGE",
    "FRACTION",
    "MILLISECONDS",
    "PAGE_SIZE",
    "PORT",
    "RATE",
    "RETRIES",
    "SECONDS",
    "SEED",
    "TIMEOUT",
    "VOLUMES",
    "Bounded",
    "DeprecatedAlias",
    "Parser",
    "add_connection_options",
    "add_loop_option",
    "bounded",
    "configure_logging",
    "echo",
    "make_crawler",
    "positive_float",
    "positive_int",
    "use_uvloop",
]

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"snapcrawl: error: {message} (see '{self.prog} --help')\n")


class Bounded:
    """An argparse ``type``: a finite number within documented bounds, checked at parse time (exit 2 otherwise).

    NaN and infinities are refused everywhere (``nan`` would disable a timeout, ``inf`` overflow a schedule);
    ``low`` is the smallest value allowed (``above``: only values above it), ``high`` the largest, so that a
    huge value cannot pin a CPU or fill memory. The message states the bounds.
    """

    def __init__(self, low: float, high: float, *, integer: bool = False, above: bool = False) -> None:
        self.low, self.high, self.integer, self.above = low, high, integer, above
        self.__name__ = "integer" if integer else "number"  # argparse names the type in some messages
        first = f"{'>' if above else '>='} {low:g}"
        self.bounds = f"{'an integer' if integer else 'a number'} {first} and <= {high:g}"

    def __call__(self, text: str) -> int | float:
        try:
            value: int | float = int(text) if self.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.bounds}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {self.bounds}, not {text!r}")
        too_low = value <= self.low if self.above else value < self.low
        if too_low or value > self.high:
            raise argparse.ArgumentTypeError(f"must be {self.bounds}, not {text}")
        return value

    def __repr__(self) -> str:
        return f"Bounded({self.bounds})"


def bounded(low: float, high: float, *, integer: bool = False, above: bool = False) -> Bounded:
    """The argparse ``type`` for a number in ``[low, high]`` (``(low, high]`` with ``above``); see :class:`Bounded`."""
    return Bounded(low, high, integer=integer, above=above)


#: The bounds every command shares, one place: what each option means is in its help.
PAGE_SIZE: Final = bounded(1, 1000, integer=True)
TIMEOUT: Final = bounded(0.01, 86_400)  # seconds: a day at most
RETRIES: Final = bounded(0, 100, integer=True)
CONCURRENCY: Final = bounded(1, 10_000, integer=True)  # each in flight holds a connection and a body
RATE: Final = bounded(0.01, 100_000)  # requests/s: above, a schedule only spins a CPU
BURST: Final = bounded(1, 1_000_000, integer=True)
SECONDS: Final = bounded(0.1, 86_400)  # a duration of load, a search budget: a day at most
MILLISECONDS: Final = bounded(0, 3_600_000, above=True)
CLAIM_AFTER: Final = bounded(1, 86_400)  # below a second, healthy workers' volumes would be taken from them
VOLUMES: Final = bounded(1, 10_000_000, integer=True)  # simulated volumes: each costs memory
FRACTION: Final = bounded(0, 1)
COUNT: Final = bounded(0, 1_000_000, integer=True)
SEED: Final = bounded(0, 2**64 - 1, integer=True)
PORT: Final = bounded(0, 65_535, integer=True)
BYTES: Final = bounded(1, 2**32, integer=True)  # 4 GiB


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: it still works for one release, and says on stderr what replaces it.

    ``parser.add_argument("--volumes", dest="volumes", action=DeprecatedAlias, use="--volumes-from")``; the old
    spelling is left out of ``--help``.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, *, use: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.use = use

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        print(
            f"snapcrawl: warning: {option_string} is deprecated and goes in 0.4; use {self.use}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def positive_int(text: str) -> int:
    """An integer >= 1 (no upper bound: prefer :func:`bounded`)."""
    return int(bounded(1, math.inf, integer=True)(text))


def positive_float(text: str) -> float:
    """A finite number > 0 (no upper bound: prefer :func:`bounded`)."""
    return float(bounded(0, sys.float_info.max, above=True)(text))


def echo(line: str, *, stdout: bool = False) -> None:
    """Print one line to stderr (or stdout), control characters escaped: it may hold a server's or a file's text,
    and an escape sequence in it could retitle the terminal or fake a summary."""
    print(printable(line), file=sys.stdout if stdout else sys.stderr)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("endpoint (default: SCP_ENDPOINT or ~/.scpconf/config.json)")
    where.add_argument("--endpoint", metavar="URL", help="API endpoint, e.g. http://127.0.0.1:8765")
    where.add_argument("--region", help="build the endpoint from a region, e.g. kr-west1")
    where.add_argument("--env", dest="environment", choices=("s", "g", "e"), help="environment of --region")
    api = parser.add_argument_group("requests")
    api.add_argument("--api-version", default=DEFAULT_API_VERSION, choices=sorted(API_VERSIONS))
    api.add_argument("--page-size", type=PAGE_SIZE, default=100, metavar="N", help="1..1000 (default 100)")
    api.add_argument("--name", help="only snapshots with this exact name")
    api.add_argument("--sort", metavar="KEY:DIR", help="e.g. created_at:desc (API 1.2+)")
    api.add_argument("--timeout", type=TIMEOUT, default=30.0, metavar="S", help="per request, 0.01..86400 (default 30)")
    api.add_argument("--max-retries", type=RETRIES, default=5, metavar="N", help="per request, 0..100 (default 5)")
    api.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (logs a warning)")
    logs = parser.add_argument_group("logging (stderr)")
    logs.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    logs.add_argument("--log-json", action="store_true", help="log JSON objects instead of text")


def add_loop_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop (about 12%% less CPU per request) when installed, as with snapcrawl[fast]",
    )


def use_uvloop(choice: str) -> bool:
    """Whether to run on uvloop: ``auto`` means when it is installed."""
    if choice == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401, PLC0415 - optional, probed at run time
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--loop uvloop needs uvloop: pip install 'snapcrawl[fast]'") from None
        return False
    return True


def configure_logging(level: str, *, json: bool, stream: TextIO | StatusLine | None = None) -> None:
    """Send structlog events at ``level`` and above to ``stream`` (stderr, above any progress line) as text or JSON."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or status_line()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def make_crawler(args: argparse.Namespace, **overrides: Any) -> Crawler:
    """A crawler for the command's options; the endpoint and credentials are resolved now, so errors come first."""
    settings: dict[str, Any] = {
        "endpoint": resolve_endpoint(args.endpoint, region=args.region, environment=args.environment),
        "credentials": load_credentials(),
        "api_version": args.api_version,
        "page_size": args.page_size,
        "timeout": args.timeout,
        "retry": RetryPolicy(max_retries=args.max_retries),
        "verify_tls": not args.insecure,
    }
    settings.update(overrides)
    return Crawler(**settings)
