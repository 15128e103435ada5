"""Type-checked use of the public API (``mypy --strict tests/typing``): a change that breaks users' typing fails CI.

Nothing here runs under pytest; mypy reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from snapcrawl import (
    BusyError,
    ConfigError,
    Crawler,
    CrawlResult,
    CrawlStats,
    CrawlStream,
    Hooks,
    Page,
    RateChanged,
    RetryScheduled,
    SnapcrawlError,
    Snapshot,
    VolumeFailed,
    VolumeFailure,
)
from snapcrawl.otel import otel_hooks
from snapcrawl.sinks import JsonLinesSink


async def crawl_volumes(crawler: Crawler, ids: list[str]) -> list[Snapshot]:
    stream = crawler.crawl(ids, sort="created_at:asc")
    assert_type(stream, CrawlStream)
    async with stream:
        snapshots = [snapshot async for snapshot in stream]
        async for page in stream.pages():
            assert_type(page, Page)
    assert_type(stream.stats, CrawlStats)
    assert_type(stream.failures, list[VolumeFailure])
    return snapshots


async def crawl_into_a_function(crawler: Crawler) -> int:
    pages: list[Page] = []
    result = await crawler.crawl_into(None, pages.append)
    assert_type(result, CrawlResult)
    return result.stats.snapshots


async def crawl_into_a_file(crawler: Crawler, ids: list[str]) -> Path | None:
    """A finished crawl replaces the file; one that stopped early keeps its partial output beside it."""
    sink = JsonLinesSink("out.jsonl", state="state.db", resume_finished=True)
    try:
        await crawler.crawl_into(ids, sink)
    except BusyError as busy:
        config_error: ConfigError = busy  # also a ConfigError: another run holds the destination
        assert_type(busy.destination, str)
        del config_error
    finally:
        await sink.aclose()
    assert_type(sink.kept, Path | None)
    return sink.kept


def hooks() -> Hooks:
    def on_retry(event: RetryScheduled) -> None:
        assert_type(event.error, SnapcrawlError)
        assert_type(event.delay, float)

    def on_rate_change(event: RateChanged) -> None:
        assert_type(event.rate, float | None)

    return Hooks(on_retry=on_retry, on_rate_change=on_rate_change, on_volume_failed=lambda e: print(e.failure.where))


async def many_hooks(endpoint: str, failed: list[VolumeFailed]) -> Crawler:
    return Crawler(endpoint=endpoint, hooks=[hooks(), otel_hooks(endpoint), Hooks(on_volume_failed=failed.append)])


async def list_one(crawler: Crawler) -> list[str]:
    return [snapshot.id async for snapshot in crawler.list_snapshots("vol-1", with_count=False)]


async def crawl_a_fleet(path: str) -> dict[str, bool]:
    from snapcrawl.fleet import AccountOutcome, AccountPage, Fleet, load_fleet  # noqa: PLC0415 - typing only
    from snapcrawl.sinks import open_sink  # noqa: PLC0415 - typing only

    fleet = Fleet(load_fleet(path, only=["prod"]).accounts, max_in_flight=64)
    async with fleet.stream() as pages:
        async for tagged in pages:
            assert_type(tagged, AccountPage)
            assert_type(tagged.page, Page)
    outcomes = await Fleet(fleet.accounts).crawl_into(lambda account: open_sink("out.jsonl", account=account.name))
    assert_type(outcomes, dict[str, AccountOutcome])
    return {name: outcome.ok for name, outcome in outcomes.items()}


def version() -> str:
    import snapcrawl  # noqa: PLC0415

    assert_type(snapcrawl.__version__, str)
    return snapcrawl.__version__
