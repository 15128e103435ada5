"""An end-to-end helper: crawl volumes with today's :class:`Crawler` into any sink, resuming from its progress.

It stands where ``Crawler.crawl_into(volume_ids, sink)`` will stand once the crawl core takes a sink, and
follows the seam's contract (``load_progress`` -> ``write`` every page -> ``fail`` -> ``complete``).
``python -m tests.sinks.driver ENDPOINT OUT --volumes FILE [--prune]`` runs it as a process (credentials from
``SCP_ACCESS_KEY`` / ``SCP_SECRET_KEY``), so that a test can kill it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from snapcrawl import Crawler, Credentials, VolumeState
from snapcrawl.sinks import AnySink, VolumeProgress, open_sink


class _Resume:
    """Today's crawler asks a checkpoint for each volume's state: answer from the sink's committed progress."""

    def __init__(self, progress: Mapping[str | None, VolumeProgress]) -> None:
        self._progress = progress

    def get(self, volume_id: str | None) -> VolumeState | None:
        state = self._progress.get(volume_id)
        if state is None:
            return None
        return VolumeState(state.status, state.markers[0] if state.markers else None, state.pages)

    def record_failure(self, volume_id: str | None, error: str) -> None:
        """Failures reach the sink after the crawl (``sink.fail``), not through here."""


async def crawl_into_sink(
    crawler: Crawler, volume_ids: Iterable[str] | None, sink: AnySink, *, settings: Mapping[str, Any] | None = None
) -> Crawler:
    """Crawl ``volume_ids`` (``None``: the account) into ``sink``, resuming what it committed; close the sink."""
    try:
        progress = await sink.load_progress()
        async with crawler:
            checkpoint: Any = _Resume(progress)
            async with crawler.crawl(volume_ids, checkpoint=checkpoint) as stream:
                async for page in stream.pages():
                    await sink.write(page)
        for failure in crawler.failures:
            await sink.fail(failure.volume_id, str(failure.error))
        await sink.complete()
    finally:
        await sink.aclose()
    return crawler


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
    anyio.run(crawl_into_sink, crawler, ids, sink)
    print(f"rows={sink.rows} failures={len(crawler.failures)}", file=sys.stderr)
    return 1 if crawler.failures else 0


if __name__ == "__main__":
    sys.exit(main())
