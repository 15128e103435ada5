"""The live progress line a crawl draws on a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO

import anyio

from .._stats import CrawlStats

__all__ = ["Progress"]


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
