"""Sink throughput: snapshots per second into JSON Lines, SQLite and PostgreSQL, with and without the crawl.

    python -m benchmarks.studies.sinks [--volumes 8000] [--repeats 3] [--dest jsonl,sqlite,postgres] [--postgres URL]

Two measures per destination, best of ``--repeats`` after one warm-up:

* **crawl**: the simulator (its own process, as in the other benchmarks) crawled by :class:`~snapcrawl.Crawler`
  into the sink, timed from opening the sink to the last commit; ``null`` is the same crawl into no sink, the
  ceiling the client reaches on this machine. By default the account-wide listing with pages of 1000 (the most
  snapshots a request can carry); ``--scope volumes`` crawls volume by volume, resumably, as the CLI does;
* **sink**: decoded pages written straight into the sink, its own ceiling.

Without ``--postgres`` a throwaway server is started from the Debian binaries (``tests/sinks/pgserver.py``).
Each run writes into a fresh table (``bench_N``) of one database, so the figures are of inserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import structlog

from snapcrawl import Crawler, Page, Snapshot
from snapcrawl._models import CrawlResult
from snapcrawl._stream import CrawlStream
from snapcrawl.simulator import DEMO_CREDENTIALS, Dataset
from snapcrawl.sinks import AnySink, open_sink
from tests.sinks.driver import crawl_into_sink
from tests.sinks.pgserver import temporary_server

from ..helpers.harness import SimulatorProcess

DESTINATIONS = ("null", "jsonl", "sqlite", "postgres")


class _NullSink:
    """Takes pages and drops them: the crawl's own ceiling."""

    def __init__(self) -> None:
        self.on_commit = None
        self.rows = 0

    async def load_progress(self) -> dict[str | None, Any]:
        return {}

    async def write(self, page: Page) -> None:
        self.rows += len(page.snapshots)

    async def fail(self, volume_id: str | None, error: str) -> None:
        return None

    async def complete(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Destinations:
    """Hands out a fresh sink per run: a new file, or a new table."""

    def __init__(self, workdir: Path, postgres: str | None) -> None:
        self.workdir = workdir
        self.postgres = postgres
        self._serial = 0

    def open(self, kind: str) -> AnySink | _NullSink:
        self._serial += 1
        name = f"bench_{self._serial}"
        if kind == "null":
            return _NullSink()
        if kind == "jsonl":
            return open_sink(str(self.workdir / f"{name}.jsonl"))
        if kind == "sqlite":
            return open_sink(f"sqlite:///{self.workdir / 'bench.db'}", table=name, account="bench")
        if self.postgres is None:
            raise SystemExit("postgres: no server (pass --postgres URL, or install the Debian package postgresql)")
        return open_sink(self.postgres, table=name, account="bench")


async def _crawl(sim: SimulatorProcess, sink: Any, args: argparse.Namespace) -> int:
    crawler = Crawler(
        endpoint=sim.url, credentials=DEMO_CREDENTIALS, concurrency=args.concurrency, page_size=args.page_size
    )
    result: CrawlResult | CrawlStream
    if args.scope == "volumes":  # resumable, as the CLI crawls a volume list
        result = await crawl_into_sink(crawler, sim.dataset().volume_ids, sink)
    else:  # the account-wide listing, fetched concurrently by offset: full pages, the most snapshots per second
        await sink.load_progress()
        async with crawler, crawler.crawl(None) as stream:
            async for page in stream.pages():
                await sink.write(page)
        await sink.complete()
        await sink.aclose()
        result = stream
    if result.failures:
        raise RuntimeError(f"{len(result.failures)} volumes failed, e.g. {result.failures[0].error}")
    return result.stats.snapshots


def _pages(dataset: Dataset, page_size: int) -> list[Page]:
    """The dataset as the crawl would deliver it: decoded pages of ``page_size``, the last of each volume marked."""
    pages: list[Page] = []
    for volume_id in dataset.volume_ids:
        records = msgspec.convert(dataset.snapshots(volume_id), list[Snapshot])
        chunks = [records[i : i + page_size] for i in range(0, len(records), page_size)] or [[]]
        pages += [Page(volume_id, n + 1, chunk, n == len(chunks) - 1) for n, chunk in enumerate(chunks)]
    return pages


async def _write_all(sink: Any, pages: list[Page]) -> int:
    await sink.load_progress()
    for page in pages:
        await sink.write(page)
    await sink.complete()
    await sink.aclose()
    return sum(len(page.snapshots) for page in pages)


def _best(runs: int, measure: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """Best and median snapshots/s of ``runs`` after a warm-up, and this process's CPU per snapshot (all threads:
    the crawl and SQLite's writer; not the simulator's or PostgreSQL's), which the machine's load does not skew."""
    rates: list[float] = []
    cpu: list[float] = []
    for run in range(runs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        rows = anyio.run(measure)
        if run:  # the first is the warm-up
            rates.append(rows / (time.perf_counter() - started))
            cpu.append((time.process_time() - cpu_started) / rows * 1e6)
    return {"best": max(rates), "median": statistics.median(rates), "rows": rows, "cpu_us": min(cpu)}


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str | None]:
    if url is not None:
        yield url
        return
    try:
        with temporary_server("bench") as server:
            yield f"{server}/postgres"
    except FileNotFoundError:
        yield None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.sinks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=10_000, help="simulator volumes (about 10 snapshots each)")
    parser.add_argument(
        "--scope",
        choices=("account", "volumes"),
        default="account",
        help="crawl the account-wide listing or each volume",
    )
    parser.add_argument("--page-size", type=int, default=1000, help="snapshots per request (the API allows 1000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dest", default=",".join(DESTINATIONS), help="comma-separated: " + ",".join(DESTINATIONS))
    parser.add_argument("--postgres", metavar="URL", help="a database to write tables into (default: a temporary one)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    kinds = [kind for kind in args.dest.split(",") if kind]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="snapcrawl-bench-") as tmp, _postgres(args.postgres) as pg:
        workdir = Path(tmp)
        destinations = Destinations(workdir, pg)
        with SimulatorProcess(volumes=args.volumes, workdir=workdir) as sim:
            pages = _pages(sim.dataset(), args.page_size)
            for kind in kinds:
                results[kind] = {"crawl": _best(args.repeats, lambda k=kind: _crawl(sim, destinations.open(k), args))}
                if kind != "null":
                    results[kind]["sink"] = _best(args.repeats, lambda k=kind: _write_all(destinations.open(k), pages))
                print(_line(kind, results[kind]), file=sys.stderr)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{sum(len(p.snapshots) for p in pages)} snapshots, {args.volumes} volumes, {args.scope} crawl, "
        f"{args.page_size} a page, best of {args.repeats}; load average {load} on {os.cpu_count()} CPUs"
    )
    header = ("destination", "crawl snapshots/s", "client CPU us each", "sink alone /s", "CPU us each")
    print(f"{header[0]:<12}{header[1]:>20}{header[2]:>20}{header[3]:>16}{header[4]:>14}")
    for kind, figures in results.items():
        crawl = figures["crawl"]
        sink = figures.get("sink")
        alone = f"{sink['best']:>16,.0f}{sink['cpu_us']:>14.1f}" if sink else f"{'-':>16}{'-':>14}"
        print(f"{kind:<12}{crawl['best']:>20,.0f}{crawl['cpu_us']:>20.1f}{alone}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _line(kind: str, figures: dict[str, dict[str, float]]) -> str:
    return f"{kind}: " + ", ".join(
        f"{name} {value['best']:,.0f}/s (median {value['median']:,.0f})" for name, value in figures.items()
    )


if __name__ == "__main__":
    sys.exit(main())
