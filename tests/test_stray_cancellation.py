"""A cancellation nobody asked for never ends a crawl as if it were complete.

anyio's task groups drop a task that ends in a bare ``CancelledError`` and cancel its siblings; before, a crawl then
ended "complete" with most volumes never crawled, replacing the previous output with the part and pruning the rest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from snapcrawl import Crawler, Page, RetryPolicy, SnapcrawlError
from snapcrawl._transport import AiohttpTransport, Response
from snapcrawl.simulator import Simulator
from snapcrawl.sinks import JsonLinesSink


class _CancelsOnce(JsonLinesSink):
    """A JSON Lines file whose fifth page raises a bare ``CancelledError`` (as a stray ``Task.cancel()`` would)."""

    writes = 0
    completed = False

    async def write(self, page: Page) -> None:
        self.writes += 1
        if self.writes == 5:
            raise asyncio.CancelledError
        await super().write(page)

    async def complete(self) -> None:
        self.completed = True
        await super().complete()


@pytest.mark.parametrize("whole_account", [False, True], ids=["volumes", "account"])
async def test_a_stray_cancellation_in_a_worker_stops_the_crawl_with_an_error(
    simulator: Simulator, tmp_path: Path, whole_account: bool
) -> None:
    sink = _CancelsOnce(tmp_path / "out.jsonl")
    async with Crawler(
        endpoint=simulator.url, credentials=simulator.credentials, page_size=10, concurrency=4
    ) as crawler:
        volumes = None if whole_account else simulator.dataset.volume_ids[:60]
        with pytest.raises(SnapcrawlError, match="cancelled without cause"):
            await crawler.crawl_into(volumes, sink)
    await sink.aclose()
    assert not sink.completed  # the output is not taken as whole


class _TransportCancelsOnce:
    """The real transport, but its third request ends in a bare ``CancelledError`` (a timeout gone astray)."""

    def __init__(self) -> None:
        self.inner = AiohttpTransport(connections=4)
        self.calls = 0

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        self.calls += 1
        if self.calls == 3:
            raise asyncio.CancelledError
        return await self.inner.get(url, headers)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_stray_cancellation_of_a_request_is_retried(simulator: Simulator) -> None:
    volumes = simulator.dataset.volume_ids[:20]
    async with Crawler(
        endpoint=simulator.url,
        credentials=simulator.credentials,
        page_size=10,
        concurrency=4,
        retry=RetryPolicy(max_retries=2, backoff_base=0.01),
        transport=_TransportCancelsOnce(),
    ) as crawler:
        pages: list[Page] = []
        result = await crawler.crawl_into(volumes, pages.append)
    assert not result.failures and result.stats.retries == 1
    expected = sum(simulator.dataset.count(volume) for volume in volumes)
    assert sum(len(page.snapshots) for page in pages) == expected
