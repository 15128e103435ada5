"""The live progress line a crawl draws on a terminal, kept below the log lines instead of under them."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import anyio

from .._models import VolumeFailure
from .._stats import CrawlStats

__all__ = ["Progress", "StatusLine", "plural", "status_line", "summary_record", "summary_text", "times"]

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


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 volume``, ``2 volumes``; ``many`` for an irregular plural (``1 retry``, ``2 retries``)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def times(count: int) -> str:
    """``once``, ``twice``, ``3 times``."""
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _account_outcome(stats: CrawlStats) -> str:
    if stats.volumes_skipped:
        return "done earlier"
    return "failed" if stats.volumes_failed else "complete" if stats.volumes_done else "unfinished"


def summary_text(stats: CrawlStats, destination: str | None, *, account: bool, pruned: int = 0) -> str:
    """The one-line summary a crawl prints on stderr; ``destination`` is already free of passwords."""
    if account:
        head = f"the account ({_account_outcome(stats)})"
    else:
        finished = stats.volumes_done + stats.volumes_failed + stats.volumes_skipped
        skipped = f", {stats.volumes_skipped} done earlier" if stats.volumes_skipped else ""
        head = f"{plural(finished, 'volume')} ({stats.volumes_done} complete, {stats.volumes_failed} failed{skipped})"
    where = f" -> {destination}" if destination and destination != "-" else ""
    if pruned:
        where += f" ({plural(pruned, 'stale row')} pruned)"
    return (
        f"snapcrawl: {head}, {plural(stats.snapshots, 'snapshot')}, {plural(stats.requests, 'request')} in "
        f"{stats.elapsed:.1f} s ({stats.requests_per_second:.0f} req/s), {plural(stats.retries, 'retry', 'retries')}, "
        f"{stats.throttled} throttled{where}"
    )


def summary_record(
    stats: CrawlStats,
    destination: str | None,
    *,
    account: bool,
    failures: Sequence[VolumeFailure],
    exit_status: int,
    interrupted_by: str | None = None,
    pruned: int = 0,
    error: BaseException | None = None,
) -> dict[str, Any]:
    """The run's summary for ``--summary-json``: counts, failures with their errors, requests and timing.

    ``error`` is what stopped the whole run (the credentials rejected), if anything did.
    """
    from .. import __version__  # noqa: PLC0415 - the package imports the CLI's modules only on demand

    outcome = "stopped" if error else "interrupted" if interrupted_by else "failed" if failures else "complete"
    record: dict[str, Any] = {
        "snapcrawl": __version__,
        "outcome": outcome,
        "exit_status": exit_status,
        "error": None if error is None else {"error_type": type(error).__name__, "error": str(error)},
        "interrupted_by": interrupted_by,
        "scope": "account" if account else "volumes",
        "destination": destination or "-",
    }
    if account:
        record["account"] = {"outcome": _account_outcome(stats), "snapshots_expected": stats.snapshots_expected}
    else:
        record["volumes"] = {
            "finished": stats.volumes_done + stats.volumes_failed + stats.volumes_skipped,
            "complete": stats.volumes_done,
            "failed": stats.volumes_failed,
            "done_earlier": stats.volumes_skipped,
        }
    record |= {
        "snapshots": stats.snapshots,
        "pages": stats.pages,
        "requests": stats.requests,
        "retries": stats.retries,
        "throttled": stats.throttled,
        "bytes": stats.bytes,
        "marker_recoveries": stats.marker_recoveries,
        "pruned": pruned,
        "rate_rps": round(stats.requests_per_second, 1),
        "duration_s": round(stats.elapsed, 3),
        "latency_ms": stats.latency_ms(),
        "failures": [
            {
                "where": failure.where,
                "volume_id": failure.volume_id,
                "error_type": type(failure.error).__name__,
                "error": str(failure.error),
                "pages_done": failure.pages_done,
            }
            for failure in failures
        ],
    }
    return record
