"""The ``snapcrawl`` command: ``list``, ``crawl``, ``demo`` and ``simulate``.

The only place that configures structlog. Exit status: 0 all complete, 1 some volumes failed, 2 usage or
configuration error, 3 credentials rejected, 130/143 interrupted by SIGINT/SIGTERM. Never a traceback for these.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, TextIO

import anyio
import structlog

from ._checkpoint import Checkpoint
from ._config import API_VERSIONS, DEFAULT_API_VERSION, RetryPolicy
from ._crawler import Crawler
from ._exceptions import AuthError, ConfigError, SnapcrawlError, unwrap_group
from ._output import JsonLinesWriter
from ._stats import CrawlStats

__all__ = ["main"]

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"snapcrawl: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("endpoint (default: SCP_ENDPOINT or ~/.scpconf/config.json)")
    where.add_argument("--endpoint", metavar="URL", help="API endpoint, e.g. http://127.0.0.1:8765")
    where.add_argument("--region", help="build the endpoint from a region, e.g. kr-west1")
    where.add_argument("--env", dest="environment", choices=("s", "g", "e"), help="environment of --region")
    api = parser.add_argument_group("requests")
    api.add_argument("--api-version", default=DEFAULT_API_VERSION, choices=sorted(API_VERSIONS))
    api.add_argument("--page-size", type=_positive_int, default=100, metavar="N", help="1..1000 (default 100)")
    api.add_argument("--paging", choices=("marker", "offset"), default="marker")
    api.add_argument("--name", help="only snapshots with this exact name")
    api.add_argument("--sort", metavar="KEY:DIR", help="e.g. created_at:desc (API 1.2+)")
    api.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S", help="per request (default 30)")
    api.add_argument("--max-retries", type=int, default=5, metavar="N", help="per request (default 5)")
    api.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (logs a warning)")
    logs = parser.add_argument_group("logging (stderr)")
    logs.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    logs.add_argument("--log-json", action="store_true", help="log JSON objects instead of text")


def _add_crawl_options(parser: argparse.ArgumentParser) -> None:
    crawl = parser.add_argument_group("crawl")
    crawl.add_argument("--out", metavar="FILE", help="JSON Lines output (default: stdout)")
    crawl.add_argument("--concurrency", type=_positive_int, default=64, metavar="N", help="requests in flight")
    crawl.add_argument("--rate", type=_positive_float, metavar="R", help="requests/s cap (default: none)")
    crawl.add_argument("--burst", type=_positive_int, default=10, metavar="N", help="with --rate (default 10)")
    crawl.add_argument("--no-progress", action="store_true", help="no live progress line on stderr")
    _add_loop_option(crawl)
    crawl.add_argument(
        "--state", metavar="FILE", help="SQLite checkpoint: a crawl run again with it skips what is done (needs --out)"
    )


def _add_loop_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop (about 12%% less CPU per request) when installed, as with snapcrawl[fast]",
    )


def _use_uvloop(choice: str) -> bool:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``snapcrawl`` command."""
    parser = _Parser(prog="snapcrawl", description="Crawl the SCP Virtual Server 'List snapshots' API.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    one = commands.add_parser("list", help="list one volume's snapshots as JSON Lines")
    one.add_argument("--volume", required=True, metavar="ID", help="volume id")
    one.add_argument("--out", metavar="FILE", help="JSON Lines output (default: stdout)")
    _add_connection_options(one)

    many = commands.add_parser("crawl", help="crawl many volumes (or the whole account) concurrently")
    source = many.add_argument_group("volumes (default: every snapshot of the account)")
    source.add_argument("--volumes", metavar="FILE", help="file of volume ids, one a line; - for stdin")
    source.add_argument("--volume", action="append", default=[], metavar="ID", help="a volume id (repeatable)")
    _add_connection_options(many)
    _add_crawl_options(many)

    demo = commands.add_parser("demo", help="crawl the built-in simulator, started in-process")
    demo.add_argument("--volumes", type=_positive_int, default=3000, metavar="N", help="simulated volumes")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="snapcrawl-demo.jsonl", metavar="FILE", help="where the snapshots go")
    demo.add_argument("--concurrency", type=_positive_int, default=64, metavar="N")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--no-faults", action="store_true", help="a perfect server: no latency, no 503s")
    _add_loop_option(demo)
    demo.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    demo.add_argument("--log-json", action="store_true")

    sim = commands.add_parser("simulate", help="run the built-in SCP simulator until interrupted")
    _add_simulator_options(sim)
    return parser


def _add_simulator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--volumes", type=_positive_int, default=2000, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volume-file", metavar="FILE", help="also write the volume ids there, one a line")
    parser.add_argument("--max-clock-skew", type=_positive_float, default=300.0, metavar="S")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--rate-limit", type=_positive_float, metavar="R", help="answer 429 above R requests/s")
    faults.add_argument("--rate-burst", type=_positive_int, default=10, metavar="N")
    faults.add_argument("--retry-after", choices=("seconds", "http-date", "none"), default="seconds")
    faults.add_argument("--error-rate", type=float, default=0.0, metavar="P", help="fraction answered 503")
    faults.add_argument("--drop-rate", type=float, default=0.0, metavar="P", help="fraction of dropped connections")
    faults.add_argument("--truncate-rate", type=float, default=0.0, metavar="P", help="fraction of truncated bodies")
    faults.add_argument("--html-rate", type=float, default=0.0, metavar="P", help="fraction of HTML 502 pages")
    faults.add_argument("--stall-rate", type=float, default=0.0, metavar="P", help="fraction stalled 30 s")
    faults.add_argument("--latency", metavar="S[:S2]", help="fixed latency, or a uniform range, in seconds")
    faults.add_argument("--fail-volume", action="append", default=[], metavar="ID", help="always 500 (repeatable)")
    faults.add_argument("--malformed-volume", action="append", default=[], metavar="ID", help="malformed JSON")


def configure_logging(level: str, *, json: bool, stream: TextIO = sys.stderr) -> None:
    """Send structlog events at ``level`` and above to ``stream`` as text or JSON."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


def _read_ids(lines: IO[str]) -> Iterator[str]:
    """Volume ids from a text stream: one a line, blank lines and ``#`` comments skipped."""
    for line in lines:
        if (volume_id := line.strip()) and not volume_id.startswith("#"):
            yield volume_id


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        file = open(path, "wb")  # noqa: SIM115 - closed right below
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    with file:
        yield file


def _make_crawler(args: argparse.Namespace, **overrides: Any) -> Crawler:
    settings: dict[str, Any] = {
        "endpoint": args.endpoint,
        "region": args.region,
        "environment": args.environment,
        "api_version": args.api_version,
        "page_size": args.page_size,
        "paging": args.paging,
        "timeout": args.timeout,
        "retry": RetryPolicy(max_retries=args.max_retries),
        "verify_tls": not args.insecure,
    }
    settings.update(overrides)
    return Crawler(**settings)


class Progress:
    """A one-line live display of a crawl on a terminal: volumes, snapshots, req/s, retries, ETA."""

    def __init__(self, stats: CrawlStats, *, total: int | None, stream: IO[str] = sys.stderr) -> None:
        self._stats = stats
        self._total = total
        self._stream = stream
        self._last = (time.monotonic(), 0)
        self._rate = 0.0

    def line(self) -> str:
        """The current progress line."""
        stats = self._stats
        now, requests = time.monotonic(), stats.requests
        then, before = self._last
        if now - then >= 0.5:
            self._rate = (requests - before) / (now - then)
            self._last = (now, requests)
        finished = stats.volumes_done + stats.volumes_failed + stats.volumes_skipped
        total = self._total if self._total is not None else stats.volumes_seen
        eta = ""
        if self._total and finished and stats.elapsed > 0:
            remaining = stats.elapsed / finished * (self._total - finished)
            eta = f" · ETA {remaining:.0f}s"
        return (
            f"volumes {finished}/{total} · snapshots {stats.snapshots} · {self._rate:.0f} req/s"
            f" · retries {stats.retries} · failed {stats.volumes_failed}{eta}"
        )

    async def run(self) -> None:
        """Redraw the line until cancelled."""
        while True:
            self._stream.write("\r\033[K" + self.line())
            self._stream.flush()
            await anyio.sleep(0.2)

    def clear(self) -> None:
        """Erase the line."""
        self._stream.write("\r\033[K")
        self._stream.flush()


def _summary(crawler: Crawler, out: str | None) -> str:
    stats = crawler.stats
    finished = stats.volumes_done + stats.volumes_failed + stats.volumes_skipped
    where = f" -> {out}" if out and out != "-" else ""
    skipped = f", {stats.volumes_skipped} done earlier" if stats.volumes_skipped else ""
    return (
        f"snapcrawl: {finished} volumes ({stats.volumes_done} complete, {stats.volumes_failed} failed{skipped}), "
        f"{stats.snapshots} snapshots, {stats.requests} requests in {stats.elapsed:.1f} s "
        f"({stats.requests_per_second:.0f} req/s), {stats.retries} retries, {stats.throttled} throttled{where}"
    )


async def _watch_signals(scope: anyio.CancelScope, caught: list[int]) -> None:
    """On SIGINT or SIGTERM, remember it and cancel the crawl so that it can stop cleanly."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


def _open_sink(
    args: argparse.Namespace, crawler: Crawler, stack: contextlib.ExitStack
) -> tuple[JsonLinesWriter, Checkpoint | None]:
    """The writer for ``--out``; with ``--state``, checkpointed and cut back to what the state file covers."""
    if getattr(args, "state", None) is None:
        return JsonLinesWriter(stack.enter_context(_output(args.out))), None
    if args.out in (None, "-"):
        raise ConfigError("--state needs --out FILE: a resumed crawl appends to that file")
    settings = {"endpoint": crawler.endpoint, "name": args.name, "sort": args.sort}
    checkpoint = stack.enter_context(Checkpoint(args.state, output=args.out, settings=settings))
    file = stack.enter_context(checkpoint.open_output())
    return JsonLinesWriter(file, checkpoint=checkpoint, offset=checkpoint.output_offset), checkpoint


async def _crawl(crawler: Crawler, volume_ids: Any, args: argparse.Namespace, *, total: int | None) -> int:
    show_progress = not args.no_progress and sys.stderr.isatty()
    progress = Progress(crawler.stats, total=total)
    caught: list[int] = []
    with contextlib.ExitStack() as stack:
        writer, checkpoint = _open_sink(args, crawler, stack)
        try:
            async with crawler, anyio.create_task_group() as tg:
                crawl_scope = anyio.CancelScope()
                tg.start_soon(_watch_signals, crawl_scope, caught)
                if show_progress:
                    tg.start_soon(progress.run)
                with crawl_scope:
                    # Writing a page to a file is quick and synchronous: done in the worker, with no stream.
                    await crawler.crawl_into(
                        writer.write_page, volume_ids, name=args.name, sort=args.sort, checkpoint=checkpoint
                    )
                tg.cancel_scope.cancel()
        finally:
            writer.flush()  # the output first, then the checkpoint that covers it
            if show_progress:
                progress.clear()
    print(_summary(crawler, args.out), file=sys.stderr)
    for failure in crawler.failures:
        print(f"snapcrawl: failed: volume {failure.volume_id}: {failure.error}", file=sys.stderr)
    if caught:
        how = "run the same command again to resume" if checkpoint else "add --state FILE to make crawls resumable"
        print(f"snapcrawl: interrupted by {signal.Signals(caught[0]).name}; {how}", file=sys.stderr)
        return 128 + caught[0]
    return EXIT_FAILURES if crawler.failures else EXIT_OK


def _volume_source(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[Any, int | None]:
    """The volume ids to crawl (lazily read) and their number, when known up front."""
    if args.volumes is None:
        return (args.volume or None), (len(set(args.volume)) or None)
    if args.volumes == "-":
        return [*args.volume, *_read_ids(sys.stdin)] if args.volume else _read_ids(sys.stdin), None
    path = Path(args.volumes)
    try:
        with path.open(encoding="utf-8") as counting:
            total = sum(1 for _ in _read_ids(counting))
        lines = stack.enter_context(path.open(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read volume ids from {path}: {exc.strerror}") from None
    if args.volume:
        return [*args.volume, *_read_ids(lines)], total + len(args.volume)
    return _read_ids(lines), total


async def _cmd_list(args: argparse.Namespace) -> int:
    crawler = _make_crawler(args)
    with _output(args.out) as file:
        writer = JsonLinesWriter(file)
        async with crawler:
            batch = []
            async for snapshot in crawler.list_snapshots(args.volume, name=args.name, sort=args.sort):
                batch.append(snapshot)
                if len(batch) >= args.page_size:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
    return EXIT_OK


async def _cmd_crawl(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        volume_ids, total = _volume_source(args, stack)
        crawler = _make_crawler(args, concurrency=args.concurrency, rate_limit=args.rate, burst=args.burst)
        return await _crawl(crawler, volume_ids, args, total=total)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .simulator import Faults, Simulator  # noqa: PLC0415 - only the demo and simulate need the server side

    # A realistic server by default: some latency, and a few 503s for the retries to absorb.
    faults = Faults() if args.no_faults else Faults(latency=(0.005, 0.03), error_rate=0.01)
    async with Simulator(volumes=args.volumes, seed=args.seed, faults=faults) as sim:
        print(f"snapcrawl: demo simulator at {sim.url} with {args.volumes} volumes", file=sys.stderr)
        crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=args.concurrency)
        args.name = args.sort = args.state = None
        return await _crawl(crawler, sim.dataset.volume_ids, args, total=len(sim.dataset.volume_ids))


async def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import Faults, Simulator  # noqa: PLC0415 - only the demo and simulate need the server side

    latency: float | tuple[float, float] = 0.0
    if args.latency:
        low, _, high = args.latency.partition(":")
        try:
            latency = (float(low), float(high)) if high else float(low)
        except ValueError:
            raise ConfigError(f"--latency must be S or S1:S2 in seconds, not {args.latency!r}") from None
    faults = Faults(
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        retry_after=args.retry_after,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
        html_rate=args.html_rate,
        stall_rate=args.stall_rate,
        latency=latency,
        fail_volumes=frozenset(args.fail_volume),
        malformed_volumes=frozenset(args.malformed_volume),
    )
    sim = Simulator(
        volumes=args.volumes,
        seed=args.seed,
        faults=faults,
        host=args.host,
        port=args.port,
        max_clock_skew=args.max_clock_skew,
    )
    try:
        await sim.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    try:
        if args.volume_file:
            ids = "".join(f"{volume_id}\n" for volume_id in sim.dataset.volume_ids)
            await anyio.Path(args.volume_file).write_text(ids, encoding="utf-8")
        creds = sim.credentials
        print(f"SCP simulator serving {args.volumes} volumes at {sim.url}  (Ctrl-C stops it)", flush=True)
        print(f"export SCP_ENDPOINT={sim.url}", flush=True)
        print(f"export SCP_ACCESS_KEY={creds.access_key}", flush=True)
        print(f"export SCP_SECRET_KEY={creds.secret_key}", flush=True)
        print(f"# e.g. snapcrawl list --volume {sim.dataset.volume_ids[0]}", flush=True)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await sim.stop()
    return EXIT_OK


_COMMANDS = {"list": _cmd_list, "crawl": _cmd_crawl, "demo": _cmd_demo, "simulate": _cmd_simulate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_level", "warning"), json=getattr(args, "log_json", False))
    try:
        uvloop = _use_uvloop(getattr(args, "loop", "asyncio"))
        return anyio.run(_COMMANDS[args.command], args, backend_options={"use_uvloop": uvloop})
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


if __name__ == "__main__":
    sys.exit(main())
