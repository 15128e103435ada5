"""``snapcrawl bench``: load-test an endpoint (open loop, ramp, closed loop, or find the highest sustained rate),
and ``snapcrawl bench report FILE...``: re-report and merge saved runs.

Exit status: 0 done and no ``--fail-if`` breached, 1 a ``--fail-if`` condition held (or ``--find-max`` found no
rate the endpoint sustains), 2 usage or configuration error, 3 credentials rejected, 130 interrupted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import ConfigError
from .._units import (
    DEFAULT_PERCENTILES,
    LONGEST,
    parse_duration,
    parse_level,
    parse_start_at,
    percentiles_arg,
    share_arg,
    stages_arg,
)
from ._common import (
    CONCURRENCY,
    EXIT_FAILURES,
    EXIT_OK,
    MILLISECONDS,
    RATE,
    Bounded,
    DeprecatedAlias,
    add_connection_options,
    add_loop_option,
    bounded,
    use_uvloop,
)
from ._ids import read_ids
from .progress import status_line

if TYPE_CHECKING:
    from ..bench import BenchConfig, BenchReport, Live

__all__ = ["progress_text", "register"]

#: Load-generating processes on one machine: beyond a few per core they only take turns.
WORKERS = bounded(1, 256, integer=True)


class _Read(Bounded):
    """A bounded number read through bench's own parser, which knows units (``500ms``, ``2m``) or ISO times."""

    def __init__(self, parse: Callable[[str], float], low: float, high: float, *, bounds: str) -> None:
        super().__init__(low, high)
        self._parse = parse
        self.bounds = bounds

    def __call__(self, text: str) -> float:
        try:
            value = self._parse(text)
        except ConfigError:
            value = math.nan
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise argparse.ArgumentTypeError(f"must be {self.bounds}, not {text!r}")
        return value


#: Durations: units or plain seconds, above 0 and at most a day.
DURATION = _Read(
    parse_duration, 0.0, LONGEST, bounds=f"a duration > 0 and <= {LONGEST:g} s, such as 500ms, 10s, 2m or 1h"
)
#: A start time: a Unix time up to 2100, or an ISO 8601 time with its offset.
START_AT = _Read(
    parse_start_at, 0.0, 4_102_444_800.0, bounds="a Unix time (up to 2100) or an ISO 8601 time with its offset"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` command."""
    bench = commands.add_parser(
        "bench",
        help="load-test the endpoint: latency percentiles, throttling, the highest sustained rate",
        description="Send the first page of each volume (round robin), or of the account listing, on a load model. "
        "'snapcrawl bench report FILE...' re-reports and merges saved runs. Durations take 500ms, 10s, 2m or 1h "
        "(a plain number is seconds).",
    )
    source = bench.add_argument_group("requests (default: the account listing's first page)")
    source.add_argument(
        "--volumes-from", dest="volumes", metavar="FILE", help="a file of volume ids, one a line; - for stdin"
    )
    source.add_argument("--volumes", dest="volumes", action=DeprecatedAlias, use="--volumes-from")
    source.add_argument("--volume", action="append", default=[], metavar="ID", help="a volume id (repeatable)")
    add_connection_options(bench)
    _drop_max_retries(bench)
    load = bench.add_argument_group("load model (one of --rate, --stages, --concurrency, --find-max)")
    model = load.add_mutually_exclusive_group()
    load.add_argument(
        "--rate",
        type=RATE,
        metavar="R",
        help="open loop: R requests/s on a fixed schedule (with --stages: the rate to ramp from; "
        "with --find-max: the first rate tried)",
    )
    load.add_argument(
        "--stages",
        type=stages_arg,
        metavar="D:R,...",
        help="open loop ramping linearly to R req/s over each D, e.g. 30s:100,1m:500,30s:0 (from --rate, or 0)",
    )
    model.add_argument("--concurrency", type=CONCURRENCY, metavar="N", help="closed loop: N requests always in flight")
    model.add_argument(
        "--find-max", action="store_true", help="search the highest rate sustained with <= 1%% failed (and --slo met)"
    )
    load.add_argument("--duration", type=DURATION, metavar="D", help="length of the load, e.g. 30s (default 10s)")
    load.add_argument(
        "--workers",
        type=WORKERS,
        default=1,
        metavar="N",
        help="N load-generating processes (a core each) sharing the load, merged into one report (default 1)",
    )
    load.add_argument(
        "--worker",
        type=share_arg,
        metavar="I/N",
        help="on several machines: this one is I of N, sending every N-th request of the one schedule (give each "
        "the same --rate/--stages, one --start-at, and --save; merge with 'bench report'); --workers splits its part",
    )
    load.add_argument(
        "--start-at",
        type=START_AT,
        metavar="TIME",
        help="start the load at TIME (Unix time, or ISO 8601 with offset), so workers on several machines start "
        "together",
    )
    load.add_argument(
        "--max-in-flight",
        type=CONCURRENCY,
        default=1000,
        metavar="N",
        help="open loop: at most N in flight; a send held back still counts from its due time (default 1000)",
    )
    search = bench.add_argument_group("find-max")
    search.add_argument("--max-rate", type=RATE, default=10_000.0, metavar="R", help="highest rate tried")
    search.add_argument(
        "--slo",
        action="append",
        default=[],
        metavar="COND",
        help="a step passes only when COND holds, e.g. 'p99<200ms', 'p95<50ms' (repeatable)",
    )
    search.add_argument("--slo-p99", type=MILLISECONDS, metavar="MS", help="the same as --slo 'p99<MSms'")
    search.add_argument("--budget", type=DURATION, default=90.0, metavar="D", help="whole search (default 90s)")
    search.add_argument("--step-duration", type=DURATION, default=3.0, metavar="D", help="each rate (default 3s)")
    _output_options(bench)
    bench.add_argument("--save", metavar="FILE", help="write the run losslessly (HDR histograms) for 'bench report'")
    bench.add_argument("--no-progress", action="store_true", help="no live view on stderr")
    add_loop_option(bench)
    bench.set_defaults(run=_cmd_bench, report_files=None)
    reports = bench.add_subparsers(dest="bench_command", metavar="{report}")
    report = reports.add_parser(
        "report",
        help="re-report saved runs, merged into one",
        description="Merge the histograms and timelines of runs saved with --save or --json (several workers, "
        "machines, or runs one after another) and report them as one, with --json, --plot and --fail-if applied "
        "to the merged result.",
    )
    report.add_argument("report_files", nargs="+", metavar="FILE", help="a saved run (--save or --json output)")
    _output_options(report)
    report.set_defaults(run=_cmd_report, percentiles=None)


def _output_options(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report as JSON, lossless like --save (- for stdout)")
    out.add_argument(
        "--plot", metavar="FILE", help="latency, rate and status codes over time, and the spectrum: .png or .html"
    )
    out.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="COND",
        help="exit 1 when COND holds, e.g. 'p99>500ms', 'p95>0.2s', 'errors>1%%', 'throttled>2%%' (repeatable)",
    )
    out.add_argument(
        "--percentiles",
        type=percentiles_arg,
        default=DEFAULT_PERCENTILES,
        metavar="P,...",
        help="latency columns of the report, e.g. 50,90,95,99,99.9 (default 50,90,99,99.9)",
    )


def _drop_max_retries(parser: argparse.ArgumentParser) -> None:
    """bench never retries: hide the connection options' --max-retries, and refuse it when given."""
    for action in parser._actions:
        if action.dest == "max_retries":
            action.help = argparse.SUPPRESS
            action.default = None


def _volume_ids(args: argparse.Namespace) -> tuple[str, ...]:
    ids = list(args.volume)
    if args.volumes == "-":
        ids += read_ids(sys.stdin)
    elif args.volumes:
        try:
            with open(args.volumes, encoding="utf-8") as lines:
                ids += read_ids(lines)
        except OSError as exc:
            raise ConfigError(f"cannot read {args.volumes}: {exc.strerror}") from None
    return tuple(ids)


def _config(args: argparse.Namespace) -> BenchConfig:
    from ..bench import DEFAULT_DURATION, BenchConfig  # noqa: PLC0415 - needs the bench extra

    if args.max_retries is not None:
        raise ConfigError("--max-retries does not apply to bench: it never retries, every answer is measured")
    if args.find_max and args.duration is not None:
        raise ConfigError("--duration sets a --rate or --concurrency run; --find-max takes --step-duration")
    if args.stages and args.duration is not None:
        raise ConfigError("--stages sets the run's length; leave out --duration")
    if not (args.find_max or args.rate or args.concurrency or args.stages):
        raise ConfigError("choose a load model: --rate R, --stages D:R,..., --concurrency N or --find-max")
    if args.rate and args.concurrency:
        raise ConfigError("--rate (open loop) and --concurrency (closed loop) exclude each other")
    if args.slo and not args.find_max:
        raise ConfigError("--slo is what a --find-max step must meet; for a --rate run use --fail-if")
    if (args.workers > 1 or args.worker) and args.find_max:
        raise ConfigError("--workers splits a --rate, --stages or --concurrency run; --find-max runs in one process")
    if args.start_at is not None and args.start_at < time.time() - 1:
        raise ConfigError(f"--start-at is {time.time() - args.start_at:.0f} s in the past")
    _check_plot(args.plot)
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
        slo=tuple(args.slo),
        budget=args.budget,
        step_duration=args.step_duration,
        fail_if=tuple(args.fail_if),
        stages=args.stages or (),
        percentiles=args.percentiles,
        workers=args.workers,
    )


def _check_plot(path: str | None) -> None:
    if path is not None and Path(path).suffix.lower() not in (".png", ".html"):
        raise ConfigError(f"--plot {path!r} must end in .png or .html")


def progress_text(live: Live) -> str:
    """The live view of a bench run: rate, in flight, p50/p99 over the last second, errors."""
    step = f"step {live.step} " if live.step is not None else ""
    target = f" (target {live.target_rps:.0f})" if live.target_rps else ""
    return (
        f"{step}{live.elapsed:6.1f} s  {live.rate:>6.0f} req/s{target}  in flight {live.in_flight}  "
        f"last s p50 {live.p50_ms:.1f} ms p99 {live.p99_ms:.1f} ms  done {live.completed}  "
        f"429s {live.throttled}  errors {live.failed}"
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
    bench = _bench_module()
    config = _config(args)
    if args.plot is not None:
        bench.require_matplotlib()
    status = status_line()
    show = not args.no_progress and sys.stderr.isatty()
    progress = (lambda live: status.show(progress_text(live))) if show else None
    share = args.worker or (0, 1)  # this machine's part of a run over several (--worker I/N)
    try:
        if config.workers > 1:
            report = await bench.run_workers(
                config, progress=progress, uvloop=use_uvloop(args.loop), share=share, start_at=args.start_at
            )
        else:
            report = await bench.run(config, progress=progress, share=share, start_at=args.start_at)
    finally:
        status.clear()
    if args.save is not None:
        await anyio.to_thread.run_sync(_write_json, report, args.save)
    return await _output(report, args)


async def _cmd_report(args: argparse.Namespace) -> int:
    bench = _bench_module()
    _check_plot(args.plot)
    for condition in args.fail_if:
        bench.Threshold.parse(condition)
    if args.plot is not None:
        bench.require_matplotlib()
    reports = await anyio.to_thread.run_sync(bench.load_reports, args.report_files)
    saved_levels = [parse_level(name) for name in reports[0].latency_ms.percentiles]
    levels = args.percentiles or saved_levels or DEFAULT_PERCENTILES
    report = bench.rejudge(bench.merge(reports, percentiles=levels), args.fail_if)
    return await _output(report, args)


def _bench_module() -> Any:
    try:
        from .. import bench  # noqa: PLC0415 - the bench extra is optional
    except ImportError:
        raise ConfigError("snapcrawl bench needs hdrhistogram: pip install 'snapcrawl[bench]'") from None
    return bench


async def _output(report: BenchReport, args: argparse.Namespace) -> int:
    """Print the summary, write --json and --plot, and pick the exit status."""
    from ..bench import plot, summary  # noqa: PLC0415 - the bench extra is optional

    print(summary(report), file=sys.stderr)
    if args.json is not None:
        await anyio.to_thread.run_sync(_write_json, report, args.json)
    if args.plot is not None:
        await anyio.to_thread.run_sync(plot, report, args.plot)
    if report.breached:
        return EXIT_FAILURES
    if report.mode == "find-max" and not report.max_sustainable_rps:
        return EXIT_FAILURES
    return EXIT_OK
