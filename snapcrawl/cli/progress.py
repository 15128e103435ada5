"""The live progress line a crawl draws on a terminal, kept below the log lines instead of under them."""

from __future__ import annotations

import sys
import time
from typing import IO

import anyio

from .._stats import CrawlStats

__all__ = ["Progress", "StatusLine", "status_line"]

_CLEAR = "\r\033[K"


class StatusLine:
    """A text stream (stderr) with one status line kept at its bottom.

    Log lines written through it appear above the status line, which is redrawn after each of them, so a
    warning never lands on the end of the progress line. With no status line shown it passes text through.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._line = ""
        self._mid_line = False  # the last write left a log line unfinished

    def write(self, text: str) -> int:
        """Write log text above the status line."""
        if self._line and not self._mid_line:
            self._stream.write(_CLEAR)
        self._stream.write(text)
        self._mid_line = not text.endswith("\n")
        if self._line and not self._mid_line:
            self._stream.write(self._line)
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self._stream.flush()

    def show(self, line: str) -> None:
        """Draw (or redraw) the status line."""
        self._line = line
        if not self._mid_line:
            self._stream.write(_CLEAR + line)
            self._stream.flush()

    def clear(self) -> None:
        """Erase the status line and stop redrawing it."""
        if self._line:
            self._line = ""
            self._stream.write(_CLEAR)
            self._stream.flush()


_status: StatusLine | None = None


def status_line(stream: IO[str] | None = None) -> StatusLine:
    """The process's stderr status line (one, shared by the logger and the progress display)."""
    global _status  # noqa: PLW0603 - one terminal, one status line
    if _status is None or stream is not None:
        _status = StatusLine(stream or sys.stderr)
    return _status


class Progress:
    """A one-line live display of a crawl: volumes done of the total (or, for the whole account, snapshots of
    the expected count), snapshots, req/s, retries, failures and an ETA."""

    def __init__(self, stats: CrawlStats, *, total: int | None, account: bool = False) -> None:
        self._stats = stats
        self._total = total
        self._account = account
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
        if self._account:
            expected = stats.snapshots_expected
            of = f"/{expected}" if expected else ""
            done, total = stats.snapshots, expected
            head = f"account · pages {stats.pages} · snapshots {stats.snapshots}{of}"
        else:
            done = stats.volumes_done + stats.volumes_failed + stats.volumes_skipped
            total = self._total
            head = f"volumes {done}/{total if total is not None else stats.volumes_seen} · snapshots {stats.snapshots}"
        eta = ""
        if total and done and stats.elapsed > 0 and done < total:
            eta = f" · ETA {stats.elapsed / done * (total - done):.0f}s"
        return f"{head} · {self._rate:.0f} req/s · retries {stats.retries} · failed {stats.volumes_failed}{eta}"

    async def run(self, status: StatusLine) -> None:
        """Redraw the line until cancelled."""
        while True:
            status.show(self.line())
            await anyio.sleep(0.2)
