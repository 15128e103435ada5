"""Request building, error mapping and retries at the aiohttp seam, with aioresponses."""

from __future__ import annotations

import email.utils
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from aioresponses import aioresponses
from yarl import URL

from snapcrawl import (
    AiohttpTransport,
    ApiError,
    AuthError,
    BadRequestError,
    Credentials,
    DecodeError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    ThrottledError,
    TransportError,
)
from snapcrawl._errors import parse_retry_after
from snapcrawl._fetch import PageFetcher
from snapcrawl._stats import CrawlStats
from snapcrawl.limits.local import LocalLimiter
from snapcrawl.signing import Signer, encode_query, make_signature
from tests.fakes import FakeClock

ENDPOINT = "http://scp.test"
CREDS = Credentials(access_key="AK", secret_key="SK")
PAGE = b'{"count":1,"snapshots":[{"id":"s1","volume_id":"v 1","size":1,"created_at":"2025-01-01T00:00:00Z"}]}'
PARAMS = {"volume_id": "v 1&x", "limit": "100", "with_count": "true"}
QUERY = encode_query(PARAMS)
WIRE_URL = f"{ENDPOINT}/v1/snapshots?limit=100&volume_id=v+1%26x&with_count=true"


class Wall:
    """A wall clock that ticks 10 ms per reading, so every signature differs."""

    def __init__(self, start: float = 1_753_174_800.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


class Fetcher:
    """A page fetcher with the stats of one crawl and a fake clock whose sleeps are recorded."""

    def __init__(self, inner: PageFetcher, clock: FakeClock) -> None:
        self.inner = inner
        self.clock = clock
        self.stats = CrawlStats()

    async def fetch(self, query: str, *, volume_id: str | None, page: int) -> Any:
        return await self.inner.fetch(query, volume_id=volume_id, page=page, stats=self.stats)


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    clock = FakeClock()
    transport = AiohttpTransport(timeout=5)
    inner = PageFetcher(
        endpoint=ENDPOINT,
        signer=Signer(CREDS, api_version="1.3", clock=Wall()),
        transport=transport,
        limiter=LocalLimiter(None, clock=clock, sleep=clock.sleep),
        in_flight=anyio.Semaphore(4),
        retry=RetryPolicy(max_retries=3),
        sleep=clock.sleep,
        rng=random.Random(1),
    )
    yield Fetcher(inner, clock)
    await transport.aclose()


def _calls(mock: aioresponses) -> list[tuple[URL, dict[str, Any]]]:
    return [(url, call.kwargs) for (_, url), calls in mock.requests.items() for call in calls]


async def test_url_sent_verbatim_and_signed(mocked: aioresponses, fetcher: Fetcher) -> None:
    """The URL goes out exactly as encoded and the signature covers that exact string."""
    mocked.get(WIRE_URL, body=PAGE)
    page = await fetcher.fetch(QUERY, volume_id="v 1&x", page=1)
    assert [s.id for s in page.snapshots] == ["s1"]
    ((url, kwargs),) = _calls(mocked)
    assert str(url) == WIRE_URL
    headers = kwargs["headers"]
    expected = make_signature(
        method="GET", url=WIRE_URL, timestamp=headers["Scp-Timestamp"], access_key="AK", secret_key="SK"
    )
    assert headers["Scp-Signature"] == expected
    assert headers["Scp-Api-Version"] == "virtualserver 1.3"


async def test_retries_are_resigned(mocked: aioresponses, fetcher: Fetcher) -> None:
    """Each attempt carries a new timestamp and signature."""
    mocked.get(WIRE_URL, status=503)
    mocked.get(WIRE_URL, status=502, body=b"<html>bad gateway</html>", content_type="text/html")
    mocked.get(WIRE_URL, body=PAGE)
    await fetcher.fetch(QUERY, volume_id="v", page=1)
    signatures = [kwargs["headers"]["Scp-Signature"] for _, kwargs in _calls(mocked)]
    assert len(signatures) == 3 and len(set(signatures)) == 3
    assert fetcher.stats.retries == 2 and fetcher.stats.requests == 3


async def test_400_is_not_retried_and_keeps_detail(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A 400 raises BadRequestError with the server's detail and request id, after one attempt."""
    body = {"errors": [{"code": "ValidationError", "detail": ["limit: must be <= 1000"], "request_id": "req-42"}]}
    mocked.get(WIRE_URL, status=400, payload=body)
    with pytest.raises(BadRequestError) as info:
        await fetcher.fetch(QUERY, volume_id="v1", page=3)
    error = info.value
    assert (error.status, error.detail, error.request_id, error.volume_id, error.page) == (
        400,
        "limit: must be <= 1000",
        "req-42",
        "v1",
        3,
    )
    assert "limit: must be <= 1000" in str(error) and "v1" in str(error)
    assert fetcher.stats.requests == 1


@pytest.mark.parametrize(
    ("status", "payload", "error_type"),
    [
        (401, {"errors": [{"code": "Unauthorized", "detail": "signature mismatch"}]}, AuthError),
        (403, {"errors": [{"code": "Forbidden"}]}, AuthError),
        (
            404,
            {"timestamp": "t", "path": "/v1/snapshots", "status": 404, "error": "Not Found", "requestId": "r"},
            AuthError,
        ),
        (404, {"errors": [{"code": "NotFound", "detail": "no such thing"}]}, NotFoundError),
        (501, {"errors": [{"code": "NotImplemented"}]}, ServerError),
        (418, {}, ApiError),
    ],
)
async def test_error_mapping_without_retry(
    mocked: aioresponses, fetcher: Fetcher, status: int, payload: dict[str, Any], error_type: type[Exception]
) -> None:
    """Statuses that a retry cannot cure map to their error type after a single attempt."""
    mocked.get(WIRE_URL, status=status, payload=payload)
    with pytest.raises(error_type) as info:
        await fetcher.fetch(QUERY, volume_id="v", page=1)
    assert type(info.value) is error_type
    assert fetcher.stats.requests == 1


async def test_auth_error_hints_at_keys_and_clock(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A rejected signature explains what to check."""
    mocked.get(WIRE_URL, status=401, payload={"errors": [{"detail": "signature mismatch"}]})
    with pytest.raises(AuthError, match=r"secret key.*clock"):
        await fetcher.fetch(QUERY, volume_id="v", page=1)


async def test_throttle_honours_retry_after(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A 429 with Retry-After waits at least that long before the retry, and counts as throttled."""
    mocked.get(WIRE_URL, status=429, headers={"Retry-After": "7"})
    mocked.get(WIRE_URL, body=PAGE)
    await fetcher.fetch(QUERY, volume_id="v", page=1)
    assert fetcher.stats.throttled == 1 and fetcher.stats.retries == 1
    sleeps = fetcher.clock.sleeps
    assert sum(sleeps) >= 7.0


async def test_gives_up_after_max_retries(mocked: aioresponses, fetcher: Fetcher) -> None:
    """After max_retries the last error is raised, carrying volume and page."""
    mocked.get(WIRE_URL, status=429, repeat=True)
    with pytest.raises(ThrottledError) as info:
        await fetcher.fetch(QUERY, volume_id="v9", page=2)
    assert (info.value.volume_id, info.value.page) == ("v9", 2)
    assert fetcher.stats.requests == 4 and fetcher.stats.retries == 3


async def test_backoff_is_full_jitter_with_cap(fetcher: Fetcher) -> None:
    """Backoff delays spread uniformly over [0, min(cap, base * 2**(n-1))]: not constant, not zero, capped."""
    policy = RetryPolicy(max_retries=3)
    for attempt in (1, 3, 12):
        bound = min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))
        delays = [fetcher.inner._backoff(attempt) for _ in range(400)]
        assert all(0 <= d <= bound for d in delays)
        # Uniform on [0, bound]: the mean is bound/2 and both halves are used.
        assert 0.4 * bound < sum(delays) / len(delays) < 0.6 * bound
        assert min(delays) < 0.1 * bound and max(delays) > 0.9 * bound


async def test_connection_errors_are_retried(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A dropped connection is a TransportError that is retried."""
    mocked.get(WIRE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(WIRE_URL, exception=TimeoutError())
    mocked.get(WIRE_URL, body=PAGE)
    page = await fetcher.fetch(QUERY, volume_id="v", page=1)
    assert page.count == 1 and fetcher.stats.retries == 2


async def test_transport_error_after_retries(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A connection that never works ends in TransportError naming the volume."""
    mocked.get(WIRE_URL, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
    with pytest.raises(TransportError, match=r"refused.*volume v"):
        await fetcher.fetch(QUERY, volume_id="v", page=1)


async def test_schema_errors_are_not_retried(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A page that is valid JSON but not a snapshot page fails at once."""
    mocked.get(WIRE_URL, body=b'{"snapshots": [{"id": 5}]}')
    with pytest.raises(DecodeError) as info:
        await fetcher.fetch(QUERY, volume_id="v", page=7)
    assert (info.value.field, info.value.page) == ("snapshots[0].id", 7)
    assert fetcher.stats.requests == 1


async def test_clock_skew_is_measured_and_corrected(mocked: aioresponses, fetcher: Fetcher) -> None:
    """A 401 whose Date shows a 10-minute skew corrects the signing clock and succeeds on the retry."""
    server_now = fetcher.inner.now() + 600
    mocked.get(WIRE_URL, status=401, headers={"Date": email.utils.formatdate(server_now, usegmt=True)})
    mocked.get(WIRE_URL, body=PAGE)
    await fetcher.fetch(QUERY, volume_id="v", page=1)
    first, second = (int(kwargs["headers"]["Scp-Timestamp"]) for _, kwargs in _calls(mocked))
    assert 595_000 < second - first < 605_000
    assert fetcher.stats.retries == 0


async def test_clock_skew_correction_that_does_not_help(mocked: aioresponses, fetcher: Fetcher) -> None:
    """When the corrected request is rejected too, the AuthError names the measured skew."""
    date = email.utils.formatdate(fetcher.inner.now() - 900, usegmt=True)
    mocked.get(WIRE_URL, status=401, headers={"Date": date}, repeat=True)
    with pytest.raises(AuthError, match=r"clock was -9\d\d s off"):
        await fetcher.fetch(QUERY, volume_id="v", page=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("99999", 300.0), ("soon", None), (None, None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Delta-seconds are clamped to [0, 300]; junk is ignored."""
    assert parse_retry_after(value, now=0.0) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date Retry-After becomes the seconds until then."""
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 12, usegmt=True), now=now) == pytest.approx(12, abs=1)


@pytest.mark.parametrize("skew", [-600.0, 600.0])
async def test_http_date_retry_after_is_read_on_the_servers_clock(
    mocked: aioresponses, fetcher: Fetcher, skew: float
) -> None:
    """With the local clock 10 minutes off, a Retry-After date 2 s after the server's Date means 2 s, not 602 or 0."""
    server_now = fetcher.inner.now() + skew
    mocked.get(
        WIRE_URL,
        status=429,
        headers={
            "Date": email.utils.formatdate(server_now, usegmt=True),
            "Retry-After": email.utils.formatdate(server_now + 2, usegmt=True),
        },
    )
    mocked.get(WIRE_URL, body=PAGE)
    await fetcher.fetch(QUERY, volume_id="v", page=1)
    assert fetcher.clock.sleeps and 1.0 <= sum(fetcher.clock.sleeps) <= 3.0
