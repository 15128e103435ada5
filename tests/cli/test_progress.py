"""The terminal display: log lines never land on the progress line, and an account crawl shows real progress."""

from __future__ import annotations

import io

from snapcrawl._log import get_logger
from snapcrawl._stats import CrawlStats
from snapcrawl.cli._common import configure_logging
from snapcrawl.cli.progress import Progress, StatusLine, status_line


def screen(raw: str) -> list[str]:
    """What a terminal shows for ``raw``: carriage returns, erase-to-end-of-line and newlines applied."""
    lines, col = [""], 0
    index = 0
    while index < len(raw):
        if raw.startswith("\033[K", index):
            lines[-1] = lines[-1][:col]
            index += 3
            continue
        char = raw[index]
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append("")
            col = 0
        else:
            line = lines[-1]
            lines[-1] = line[:col] + char + line[col + 1 :]
            col += 1
        index += 1
    return lines


def test_log_lines_go_above_the_progress_line() -> None:
    """A warning logged while the progress line is shown appears on its own line, and the progress line stays last."""
    out = io.StringIO()
    status = StatusLine(out)
    status.show("volumes 3/10 · snapshots 40")
    print("warning: volume v1 failed", file=status, flush=True)  # as structlog's PrintLogger writes
    status.show("volumes 4/10 · snapshots 52")
    print("warning: volume v2 failed", file=status, flush=True)
    assert screen(out.getvalue()) == [
        "warning: volume v1 failed",
        "warning: volume v2 failed",
        "volumes 4/10 · snapshots 52",
    ]
    status.clear()
    assert screen(out.getvalue())[-1] == ""


def test_structlog_writes_through_the_status_line() -> None:
    """The CLI's logger writes above the progress line it shares stderr with."""
    out = io.StringIO()
    status = status_line(out)
    configure_logging("warning", json=False)
    status.show("progress")
    get_logger("test").warning("volume.failed", where="volume v1")
    shown = screen(out.getvalue())
    assert "volume.failed" in shown[0] and "where='volume v1'" in shown[0]
    assert shown[-1] == "progress"


def test_account_progress_shows_pages_snapshots_and_eta() -> None:
    """An account-wide crawl shows its pages and snapshots against the expected count, and an ETA."""
    stats = CrawlStats(pages=12, snapshots=1200, requests=12, snapshots_expected=4800, started_at=0.0, ended_at=10.0)
    line = Progress(stats, total=None, account=True).line()
    assert line.startswith("account · pages 12 · snapshots 1200/4800")
    assert "ETA 30s" in line and "volumes" not in line


def test_volume_progress_counts_finished_volumes() -> None:
    """A crawl of volumes shows finished volumes of the total and an ETA."""
    stats = CrawlStats(volumes_done=20, volumes_failed=5, snapshots=300, started_at=0.0, ended_at=5.0)
    line = Progress(stats, total=100).line()
    assert line.startswith("volumes 25/100 · snapshots 300") and "failed 5" in line and "ETA 15s" in line
