"""Edges of one fetch that mutation testing found untested (issue 24): what is counted, and what the limiter hears."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import aiohttp
import anyio
import pytest
from aioresponses import aioresponses

from snapcrawl import AiohttpTransport, Credentials, Hooks, RetryPolicy, ServerError, TransportError
from snapcrawl._events import Subscribers
from snapcrawl._fetch import PageFetcher
from snapcrawl._stats import CrawlStats
from snapcrawl.limits.local import LocalLimiter
from snapcrawl.signing import Signer
from tests.fakes import FakeClock, unpace

ENDPOINT = "http://scp.test"
PAGE = b'{"count":1,"snapshots":[{"id":"s1","volume_id":"v1","size":1,"created_at":"2025-01-01T00:00:00Z"}]}'
QUERY = "limit=100&volume_id=v1"
WIRE_URL = f"{ENDPOINT}/v1/snapshots?{QUERY}"


class TicketLimiter(LocalLimiter):
    """A local limiter that notes the ticket of every answer it is fed."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(None, clock=clock, sleep=clock.sleep)
        self.tickets: list[float] = []

    def on_success(self, ticket: float, headers: Mapping[str, str]) -> None:
        self.tickets.append(ticket)
        super().on_success(ticket, headers)


def _fetcher(
    transport: AiohttpTransport, limiter: LocalLimiter, *, retries: int = 3, hooks: Hooks | None = None
) -> PageFetcher:
    wall = iter(range(1_753_174_800_000, 1_753_175_800_000, 7))  # a new millisecond for every signature
    sleep = FakeClock().sleep
    return PageFetcher(
        endpoint=ENDPOINT,
        signer=Signer(
            Credentials(access_key="AK", secret_key="SK"), api_version="1.3", clock=lambda: next(wall) / 1000
        ),
        transport=transport,
        limiter=limiter,
        in_flight=anyio.Semaphore(4),
        retry=RetryPolicy(max_retries=retries, backoff_base=0, backoff_cap=0),
        events=Subscribers([hooks]) if hooks else None,
        sleep=sleep,
        rng=random.Random(1),
    )


async def test_bytes_and_latency_count_answers_only(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """A dropped connection is a request with no bytes and no latency; the 200 after it brings both."""
    mocked.get(WIRE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(WIRE_URL, body=PAGE)
    clock = FakeClock()
    stats = CrawlStats()
    await _fetcher(transport, LocalLimiter(None, clock=clock, sleep=clock.sleep)).fetch(
        QUERY, volume_id="v1", page=1, stats=stats
    )
    assert stats.requests == 2 and stats.bytes == len(PAGE)
    assert stats.latency.percentile(0) is not None and stats.latency.percentile(1) is not None
    only_drops = CrawlStats()
    mocked.get(WIRE_URL, exception=aiohttp.ServerDisconnectedError())
    with pytest.raises(TransportError):
        await _fetcher(transport, LocalLimiter(None, clock=clock, sleep=clock.sleep), retries=0).fetch(
            QUERY, volume_id="v1", page=1, stats=only_drops
        )
    assert only_drops.requests == 1 and only_drops.bytes == 0 and only_drops.latency.percentile(0.5) is None


async def test_an_unpaced_request_answers_for_no_round(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """A request sent while the limiter was idle gets a ticket older than any round (``-inf``): should a throttle
    start the limiter while it is in flight, its answer says nothing about the rate set after it was sent."""
    mocked.get(WIRE_URL, body=PAGE)
    clock = FakeClock()
    limiter = unpace(TicketLimiter(clock), clock)
    limiter.tickets.clear()
    await _fetcher(transport, limiter).fetch(QUERY, volume_id="v1", page=1, stats=CrawlStats())
    assert limiter.tickets == [-math.inf]


async def test_a_quota_announced_by_a_200_is_reported(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """The first 200 carries the server's quota: the idle limiter takes it as its cap, and listeners hear the rate."""
    mocked.get(WIRE_URL, body=PAGE, headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9"})
    rates: list[float | None] = []
    clock = FakeClock()
    limiter = LocalLimiter(None, clock=clock, sleep=clock.sleep)
    fetcher = _fetcher(transport, limiter, hooks=Hooks(on_rate_change=lambda event: rates.append(event.rate)))
    await fetcher.fetch(QUERY, volume_id="v1", page=1, stats=CrawlStats())
    assert limiter.active and limiter.rate is not None
    assert rates == [limiter.rate]


async def test_more_than_256_retries_end(mocked: aioresponses, transport: AiohttpTransport) -> None:
    """``max_retries`` has no upper bound: past CPython's cached small ints the count is still compared by value."""
    mocked.get(WIRE_URL, status=503, repeat=True)
    clock = FakeClock()
    stats = CrawlStats()
    fetcher = _fetcher(transport, LocalLimiter(None, clock=clock, sleep=clock.sleep), retries=300)
    with anyio.fail_after(10), pytest.raises(ServerError):
        await fetcher.fetch(QUERY, volume_id="v1", page=1, stats=stats)
    assert stats.requests == 301
