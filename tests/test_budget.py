"""The crawler-wide budget of response bytes: bounded whatever the concurrency, and never stuck."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from snapcrawl import Crawler
from snapcrawl._budget import ByteBudget
from snapcrawl._transport import AiohttpTransport
from snapcrawl.simulator import Faults, Simulator


async def test_readers_wait_for_room_and_the_oldest_always_goes_on() -> None:
    """Twenty readers taking 4 chunks of 10 bytes under a budget of 25: never more than 25 + one reader's held."""
    budget = ByteBudget(25)
    most = 0

    async def reader() -> None:
        nonlocal most
        with budget.reservation() as held:
            for _ in range(4):
                await held.take(10)
                most = max(most, budget.used)
                await anyio.lowlevel.checkpoint()

    with anyio.fail_after(5):  # every reader holds part of the budget while it waits: no deadlock
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(reader)
    assert budget.used == 0
    assert 25 < most <= 25 + 40  # the oldest passed the budget alone, by at most its own body


def test_a_budget_must_hold_something() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ByteBudget(0)


async def test_big_pages_at_high_concurrency_stay_within_the_budget(simulator: Simulator) -> None:
    """Thirty-two 1 MiB pages at once under a 3 MiB budget: all delivered, never more than the budget + one."""
    volumes = simulator.dataset.volume_ids[:32]
    simulator.faults = Faults(huge_volumes=frozenset(volumes), huge_body_bytes=1024 * 1024)
    transport = AiohttpTransport(max_bytes_in_flight=3 * 1024 * 1024)
    try:
        crawler = Crawler(
            endpoint=simulator.url, credentials=simulator.credentials, transport=transport, concurrency=32
        )
        async with crawler:
            result = await crawler.crawl_into(volumes, lambda page: None)
    finally:
        await transport.aclose()
    assert result.failures == []
    assert 1024 * 1024 < transport.budget.peak <= 4 * 1024 * 1024 + 64 * 1024
