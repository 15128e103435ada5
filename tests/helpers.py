"""Small helpers shared by tests that crawl: run one crawl to the end and keep what it produced."""

from __future__ import annotations

from typing import Any

from snapcrawl import Crawler, Snapshot, VolumeFailure


async def collect(crawler: Crawler, volume_ids: Any, **options: Any) -> tuple[list[Snapshot], list[VolumeFailure]]:
    """Every snapshot one crawl streams, and that crawl's own failures."""
    async with crawler.crawl(volume_ids, **options) as stream:
        snapshots = [snapshot async for snapshot in stream]
    return snapshots, stream.failures
