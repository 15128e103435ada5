"""snapcrawl as a library, crawling volumes to a JSON Lines file as ``snapcrawl crawl`` does, and reporting on it.

    python -m benchmarks.clients.drive --endpoint URL --volumes FILE --out FILE --report FILE
        [--concurrency 64] [--page-size 100] [--rate R --burst B] [--timestamps]

``--timestamps`` wraps the transport to record when each request started and ended, for the steady-state rate
and the mean number of requests in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio

from snapcrawl import AiohttpTransport, Crawler, Credentials, Transport
from snapcrawl.cli._common import configure_logging as cli_logging
from snapcrawl.cli._common import use_uvloop
from snapcrawl.simulator import DEMO_CREDENTIALS
from snapcrawl.sinks import open_sink
from snapcrawl.transport import Response

__all__ = ["RecordingTransport", "crawl", "main", "max_in_window", "rates"]


class RecordingTransport:
    """A :class:`~snapcrawl.Transport` that notes when each request started and ended (``perf_counter``)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.spans: list[tuple[float, float]] = []

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """Send through the wrapped transport, timing it."""
        started = time.perf_counter()
        try:
            return await self.inner.get(url, headers)
        finally:
            self.spans.append((started, time.perf_counter()))

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()


def max_in_window(stamps: Sequence[float], window: float = 1.0) -> int:
    """The most of ``stamps`` (seconds) within any half-open interval ``window`` long."""
    ordered, best, first = sorted(stamps), 0, 0
    for last, stamp in enumerate(ordered):
        while stamp - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def rates(spans: Sequence[tuple[float, float]], elapsed: float) -> dict[str, float]:
    """Steady-state rate (completions over the middle 80% of them), mean in flight, and median latency."""
    if len(spans) < 10 or elapsed <= 0:
        return {}
    ends = sorted(end for _, end in spans)
    low, high = len(ends) // 10, len(ends) * 9 // 10
    steady = (high - low) / (ends[high] - ends[low]) if ends[high] > ends[low] else 0.0
    latencies = [end - start for start, end in spans]
    return {
        "steady_rps": steady,
        "mean_in_flight": sum(latencies) / elapsed,
        "latency_p50_ms": statistics.median(latencies) * 1000,
    }


def configure_logging() -> None:
    """Log as the command line does by default (warnings and above, to stderr), so logging costs the same."""
    cli_logging("warning", json=False)


async def crawl(
    endpoint: str,
    volume_ids: Iterable[str],
    out: Path,
    *,
    credentials: Credentials,
    concurrency: int = 64,
    page_size: int = 100,
    rate: float | None = None,
    burst: int = 10,
    timestamps: bool = False,
) -> dict[str, Any]:
    """Crawl ``volume_ids`` into ``out``; return the crawler's counts (and request spans with ``timestamps``)."""
    recorder = RecordingTransport(AiohttpTransport(connections=concurrency)) if timestamps else None
    crawler = Crawler(
        endpoint=endpoint,
        credentials=credentials,
        concurrency=concurrency,
        page_size=page_size,
        rate_limit=rate,
        burst=burst,
        transport=recorder,
    )
    sink = open_sink(str(out), settings={"endpoint": endpoint})  # the sink the CLI writes ``--out FILE`` with
    started = time.perf_counter()
    try:
        async with crawler:
            crawl = await crawler.crawl_into(volume_ids, sink)
    finally:
        await sink.aclose()
    elapsed = time.perf_counter() - started
    stats = crawl.stats
    result: dict[str, Any] = {
        "requests": stats.requests,
        "snapshots": stats.snapshots,
        "retries": stats.retries,
        "failures": len(crawl.failures),
        "elapsed": elapsed,
        "latency_ms": stats.latency_ms(),
    }
    if recorder is not None:
        result.update(rates(recorder.spans, elapsed))
        result["sent_max_in_1s_window"] = max_in_window([start for start, _ in recorder.spans])
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients.drive", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, metavar="URL")
    parser.add_argument("--volumes", required=True, type=Path, metavar="FILE")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE")
    parser.add_argument("--report", required=True, type=Path, metavar="FILE")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--timestamps", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl once and write the report."""
    args = _parser().parse_args(argv)
    configure_logging()
    credentials = Credentials(
        access_key=os.environ.get("SCP_ACCESS_KEY", DEMO_CREDENTIALS.access_key),
        secret_key=os.environ.get("SCP_SECRET_KEY", DEMO_CREDENTIALS.secret_key),
    )
    volume_ids = [line.strip() for line in args.volumes.read_text(encoding="utf-8").splitlines() if line.strip()]
    cpu_started = time.process_time()
    result = anyio.run(
        lambda: crawl(
            args.endpoint,
            volume_ids,
            args.out,
            credentials=credentials,
            concurrency=args.concurrency,
            page_size=args.page_size,
            rate=args.rate,
            burst=args.burst,
            timestamps=args.timestamps,
        ),
        # The same event loop as the command line would pick (uvloop when installed).
        backend_options={"use_uvloop": use_uvloop("auto")},
    )
    result["cpu"] = time.process_time() - cpu_started
    args.report.write_text(json.dumps(result), encoding="utf-8")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
