"""An end-to-end helper: a crawl into any sink through ``Crawler.crawl_into``, closed as the CLI should close it.

It follows the seam's contract around the crawl: ``crawl_into`` calls ``complete`` only when the crawl ran to
its end (not when it was cancelled or stopped by an error); the owner calls ``aclose`` always.
``python -m tests.sinks.driver ENDPOINT OUT --volumes FILE [--prune]`` runs it as a process (credentials from
``SCP_ACCESS_KEY`` / ``SCP_SECRET_KEY``), so that a test can kill it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import Any

import anyio

from snapcrawl import Crawler, Credentials
from snapcrawl._models import CrawlResult
from snapcrawl.sinks import AnySink, open_sink


async def crawl_into_sink(crawler: Crawler, volume_ids: Iterable[str] | None, sink: AnySink) -> CrawlResult:
    """Crawl ``volume_ids`` (``None``: the account) into ``sink``, resuming what it committed; close the sink.

    ``crawl_into`` tells the sink ``complete()`` when the crawl ran to its end; closing it is the owner's job.
    """
    try:
        async with crawler:
            result = await crawler.crawl_into(volume_ids, sink)
    finally:
        await sink.aclose()
    return result


def crawl_settings(endpoint: str) -> dict[str, Any]:
    """The settings a crawl records in its checkpoint, as the CLI will pass them."""
    return {"endpoint": endpoint, "name": None, "sort": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sinks.driver")
    parser.add_argument("endpoint")
    parser.add_argument("out")
    parser.add_argument("--volumes", help="a file of volume ids (default: the whole account)")
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    ids = None
    if args.volumes:
        with open(args.volumes, encoding="utf-8") as file:
            ids = [line.strip() for line in file if line.strip()]
    credentials = Credentials(access_key=os.environ["SCP_ACCESS_KEY"], secret_key=os.environ["SCP_SECRET_KEY"])
    crawler = Crawler(endpoint=args.endpoint, credentials=credentials, concurrency=args.concurrency)
    sink = open_sink(args.out, prune=args.prune, settings=crawl_settings(args.endpoint), batch_rows=500)
    result = anyio.run(crawl_into_sink, crawler, ids, sink)
    print(f"rows={sink.rows} failures={len(result.failures)}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
