"""``snapcrawl bench``: load-test an endpoint (open loop, closed loop, or find the highest sustained rate).

Exit status: 0 done and no ``--fail-if`` breached, 1 a ``--fail-if`` condition held (or ``--find-max`` found no
rate the endpoint sustains), 2 usage or configuration error, 3 credentials rejected, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio

from .._exceptions import ConfigError
from ._common import (
    CONCURRENCY,
    EXIT_FAILURES,
    EXIT_OK,
    MILLISECONDS,
    RATE,
    SECONDS,
    DeprecatedAlias,
    add_connection_options,
    add_loop_option,
)
from .progress import status_line

if TYPE_CHECKING:
    from ..bench import BenchConfig, BenchReport, Live

__all__ = ["progress_text", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command."""
    bench = commands.add_parser(
        "bench",
        help="load-test the endpoint: latency percentiles, throttling, the highest sustained rate",
        description="Send the first page of each volume (round robin), or of the account listing, on a load model.",
    )
    source = bench.add_argument_group("requests (default: the account listing's first page)")
    source.add_argument(
        "--volumes-from", dest="volumes", metavar="FILE", help="a file of volume ids, one a line; - for stdin"
    )
    source.add_argument("--volumes", dest="volumes", action=DeprecatedAlias, use="--volumes-from")
    source.add_argument("--volume", action="append", default=[], metavar="ID", help="a volume id (repeatable)")
    add_connection_options(bench)
    load = bench.add_argument_group("load model (one of --rate, --concurrency, --find-max)")
    model = load.add_mutually_exclusive_group()
    load.add_argument(
        "--rate",
        type=RATE,
        metavar="R",
        help="open loop: R requests/s on a fixed schedule (with --find-max: the first rate tried)",
    )
    model.add_argument("--concurrency", type=CONCURRENCY, metavar="N", help="closed loop: N requests always in flight")
    model.add_argument("--find-max", action="store_true", help="search the highest rate sustained with <= 1%% failed")
    load.add_argument("--duration", type=SECONDS, metavar="S", help="seconds of load (default 10)")
    load.add_argument(
        "--max-in-flight",
        type=CONCURRENCY,
        default=1000,
        metavar="N",
        help="open loop: at most N in flight; a send held back still counts from its due time (default 1000)",
    )
    search = bench.add_argument_group("find-max")
    search.add_argument("--max-rate", type=RATE, default=10_000.0, metavar="R", help="highest rate tried")
    search.add_argument("--slo-p99", type=MILLISECONDS, metavar="MS", help="a step passes only with p99 under MS")
    search.add_argument("--budget", type=SECONDS, default=90.0, metavar="S", help="whole search (default 90 s)")
    search.add_argument("--step-duration", type=SECONDS, default=3.0, metavar="S", help="each rate (default 3 s)")
    out = bench.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report as JSON (- for stdout)")
    out.add_argument("--plot", metavar="FILE", help="latency over time and percentile spectrum, .png or .html")
    out.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="COND",
        help="exit 1 when COND holds, e.g. 'p99>500ms', 'errors>1%%', 'throttled>2%%' (repeatable)",
    )
    out.add_argument("--no-progress", action="store_true", help="no live progress line on stderr")
    add_loop_option(bench)
    bench.set_defaults(run=_cmd_bench)


def _read_ids(lines: IO[str]) -> Iterator[str]:
    for line in lines:
        if (volume_id := line.strip()) and not volume_id.startswith("#"):
            yield volume_id


def _volume_ids(args: argparse.Namespace) -> tuple[str, ...]:
    ids = list(args.volume)
    if args.volumes == "-":
        ids += _read_ids(sys.stdin)
    elif args.volumes:
        try:
            with open(args.volumes, encoding="utf-8") as lines:
                ids += _read_ids(lines)
        except OSError as exc:
            raise ConfigError(f"cannot read {args.volumes}: {exc.strerror}") from None
    return tuple(ids)


def _config(args: argparse.Namespace) -> BenchConfig:
    from ..bench import DEFAULT_DURATION, BenchConfig  # noqa: PLC0415 - needs the bench extra

    if args.find_max and args.duration is not None:
        raise ConfigError("--duration sets a --rate or --concurrency run; --find-max takes --step-duration")
    if not (args.find_max or args.rate or args.concurrency):
        raise ConfigError("choose a load model: --rate R, --concurrency N or --find-max")
    if args.rate and args.concurrency:
        raise ConfigError("--rate (open loop) and --concurrency (closed loop) exclude each other")
    if args.plot is not None and Path(args.plot).suffix.lower() not in (".png", ".html"):
        raise ConfigError(f"--plot {args.plot!r} must end in .png or .html")
    return BenchConfig(
        endpoint=args.endpoint,
        region=args.region,
        environment=args.environment,
        api_version=args.api_version,
        page_size=args.page_size,
        name=args.name,
        sort=args.sort,
        timeout=args.timeout,
        verify_tls=not args.insecure,
        volume_ids=_volume_ids(args),
        rate=args.rate,
        concurrency=args.concurrency,
        duration=args.duration or DEFAULT_DURATION,
        max_in_flight=args.max_in_flight,
        find_max=args.find_max,
        max_rate=args.max_rate,
        slo_p99_ms=args.slo_p99,
        budget=args.budget,
        step_duration=args.step_duration,
        fail_if=tuple(args.fail_if),
    )


def progress_text(live: Live) -> str:
    """The live status line of a bench run."""
    step = f"step {live.step} " if live.step is not None else ""
    target = f"@{live.target_rps:g}/s " if live.target_rps else ""
    return (
        f"{step}{target}{live.elapsed:6.1f} s  sent {live.sent}  done {live.completed}  in flight "
        f"{live.in_flight}  p99 (last s) {live.p99_ms:.1f} ms  429s {live.throttled}  failed {live.failed}"
    )


def _write_json(report: BenchReport, path: str) -> None:
    from ..bench import encode_report  # noqa: PLC0415 - needs the bench extra

    data = encode_report(report)
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


async def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        from .. import bench  # noqa: PLC0415 - the bench extra is optional
    except ImportError:
        raise ConfigError("snapcrawl bench needs hdrhistogram: pip install 'snapcrawl[bench]'") from None
    config = _config(args)
    if args.plot is not None:
        bench.require_matplotlib()
    status = status_line()
    show = not args.no_progress and sys.stderr.isatty()
    try:
        report = await bench.run(config, progress=(lambda live: status.show(progress_text(live))) if show else None)
    finally:
        status.clear()
    print(bench.summary(report), file=sys.stderr)
    if args.json is not None:
        await anyio.to_thread.run_sync(_write_json, report, args.json)
    if args.plot is not None:
        await anyio.to_thread.run_sync(bench.plot, report, args.plot)
    if report.breached:
        return EXIT_FAILURES
    if report.mode == "find-max" and not report.max_sustainable_rps:
        return EXIT_FAILURES
    return EXIT_OK
