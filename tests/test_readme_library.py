"""The library's documented promises (the README's quick start, docs/service.md), through the public API, on a
fake transport (or a real loopback server where the real transport is the point): retries, per-volume isolation,
errors raised after what was fetched, logging."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from snapcrawl import (
    DEFAULT_RETRY,
    AuthError,
    Crawler,
    Credentials,
    DecodeError,
    PaginationError,
    RetryPolicy,
    ServerError,
    Snapshot,
)
from snapcrawl._walk import MAX_STALLED_PAGES
from snapcrawl.transport import Response

from .fakes import (
    FakeClock,
    FakeTransport,
    PageServer,
    RecordingSink,
    ok,
    page_body,
    query_of,
    serve_in_thread,
    snapshot,
)
from .helpers import collect

CREDENTIALS = Credentials(access_key="AK-test", secret_key="SK-test")
DEEP = 100_000


def _crawler(handler: Callable[[str, dict[str, str]], Response], **settings: object) -> tuple[Crawler, FakeTransport]:
    """A crawler on a fake transport and a fake clock: no socket, no real sleep."""
    transport, clock = FakeTransport(handler), FakeClock()
    crawler = Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=CREDENTIALS,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        **settings,  # type: ignore[arg-type]
    )
    return crawler, transport


async def _drain(snapshots: AsyncIterator[Snapshot], into: list[str]) -> None:
    """Append each snapshot's id to ``into`` as it arrives (what was received survives an exception)."""
    async for snap in snapshots:
        into.append(snap.id)


def _one_snapshot(url: str) -> Response:
    volume_id = query_of(url)["volume_id"]
    return ok(page_body([snapshot(1, volume_id)], count=1))


async def test_deeply_nested_page_fails_only_its_volume() -> None:
    """A page nested 100,000 lists deep fails its volume with a DecodeError; the other volumes complete."""

    def handler(url: str, headers: dict[str, str]) -> Response:
        if query_of(url)["volume_id"] == "deep":
            return ok(b'{"snapshots": [], "unknown": ' + b"[" * DEEP + b"]" * DEEP + b"}")
        return _one_snapshot(url)

    crawler, transport = _crawler(handler)
    async with crawler:
        snapshots, failures = await collect(crawler, ["a", "deep", "b"])
    assert sorted(snap.volume_id for snap in snapshots) == ["a", "b"]
    [failure] = failures
    assert (failure.volume_id, failure.pages_done) == ("deep", 0)
    assert isinstance(failure.error, DecodeError) and failure.error.page == 1 and "deep" in str(failure.error)
    assert sum(r.query["volume_id"] == "deep" for r in transport.requests) == 1  # the same bytes fail again


async def test_deeply_nested_error_body_fails_only_its_volume() -> None:
    """A 503 whose body is nested 100,000 deep is retried as a 503 and then fails its volume by status."""

    def handler(url: str, headers: dict[str, str]) -> Response:
        if query_of(url)["volume_id"] == "deep":
            return Response(503, b'{"errors": [], "trace": ' + b"[" * DEEP + b"]" * DEEP + b"}")
        return _one_snapshot(url)

    crawler, transport = _crawler(handler)
    async with crawler:
        snapshots, failures = await collect(crawler, ["a", "deep"])
    assert [snap.volume_id for snap in snapshots] == ["a"]
    [failure] = failures
    assert isinstance(failure.error, ServerError) and failure.error.status == 503
    assert sum(r.query["volume_id"] == "deep" for r in transport.requests) == 1 + DEFAULT_RETRY.max_retries


async def test_garbled_body_is_retried() -> None:
    """A 200 whose body is cut short or has a byte that is not UTF-8 is retried; the volume then completes."""
    bodies = iter([b'{"count": 1, "snapshots": [', b'{"count": 1, "snapshots": [{"id": "\xff"}]}'])

    def handler(url: str, headers: dict[str, str]) -> Response:
        body = next(bodies, None)
        return _one_snapshot(url) if body is None else ok(body)

    crawler, transport = _crawler(handler)
    async with crawler:
        snapshots, failures = await collect(crawler, ["a"])
    assert [snap.id for snap in snapshots] == ["a-snap-00001"] and failures == []
    assert crawler.stats.retries == 2 and len(transport.requests) == 3


async def test_500_502_503_504_are_retried() -> None:
    """Each retryable status is retried and the volume then completes."""
    statuses = iter([500, 504, 502, 503])

    def handler(url: str, headers: dict[str, str]) -> Response:
        status = next(statuses, 200)
        return _one_snapshot(url) if status == 200 else Response(status, b"{}")

    crawler, transport = _crawler(handler)
    async with crawler:
        snapshots, failures = await collect(crawler, ["a"])
    assert [snap.id for snap in snapshots] == ["a-snap-00001"] and failures == []
    assert crawler.stats.retries == 4 and len(transport.requests) == 5


async def test_default_max_retries_is_five() -> None:
    """Without a retry policy a failing request is sent 1 + 5 times, then its volume fails."""
    crawler, transport = _crawler(lambda url, headers: Response(500, b""))
    async with crawler:
        snapshots, failures = await collect(crawler, ["a"])
    assert snapshots == [] and DEFAULT_RETRY.max_retries == 5
    assert len(transport.requests) == 6 and crawler.stats.retries == 5
    assert isinstance(failures[0].error, ServerError)


async def test_every_attempt_is_signed_afresh() -> None:
    """A retried request carries a new timestamp and signature (re-signed at send time)."""
    clock_values = iter(range(1_700_000_000, 1_700_000_100))
    statuses = iter([503, 200])

    def handler(url: str, headers: dict[str, str]) -> Response:
        return _one_snapshot(url) if next(statuses) == 200 else Response(503, b"")

    transport, clock = FakeTransport(handler), FakeClock()
    crawler = Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=CREDENTIALS,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=lambda: float(next(clock_values)),
    )
    async with crawler:
        snapshots, _ = await collect(crawler, ["a"])
        assert len(snapshots) == 1
    first, second = (request.headers for request in transport.requests)
    assert first["Scp-Timestamp"] != second["Scp-Timestamp"]
    assert first["Scp-Signature"] != second["Scp-Signature"]


async def test_pagination_error_reaches_the_caller() -> None:
    """A server that repeats a full page fails that volume with PaginationError (after a few); others complete."""

    def handler(url: str, headers: dict[str, str]) -> Response:
        query = query_of(url)
        if query["volume_id"] == "stuck":  # always the same first page, never a count
            return ok(page_body([snapshot(n, "stuck") for n in (1, 2)]))
        return _one_snapshot(url)

    crawler, _ = _crawler(handler, page_size=2)
    async with crawler:
        snapshots, failures = await collect(crawler, ["stuck", "b"])
        got = Counter(snap.volume_id for snap in snapshots)
        assert got == {"stuck": 2, "b": 1}  # the first page was delivered, the repeat was not
        [failure] = failures
        assert isinstance(failure.error, PaginationError)
        assert (failure.volume_id, failure.error.page) == ("stuck", 2 + MAX_STALLED_PAGES)
        listed: list[str] = []
        with pytest.raises(PaginationError):
            await _drain(crawler.list_snapshots("stuck"), listed)
        assert listed == ["stuck-snap-00001", "stuck-snap-00002"]


def _revoked_after(successes: int, count: int) -> Callable[[str, dict[str, str]], Response]:
    """Pages of two snapshots of one volume; after ``successes`` answers every request gets a 401."""
    answered = 0

    def handler(url: str, headers: dict[str, str]) -> Response:
        nonlocal answered
        if answered >= successes:
            return Response(401, b'{"errors": [{"detail": "access key revoked"}]}')
        answered += 1
        query = query_of(url)
        start = 0 if "marker" not in query else int(query["marker"].rsplit("-", 1)[1])
        numbers = range(start + 1, min(start + 2, count) + 1)
        return ok(page_body([snapshot(n, query["volume_id"]) for n in numbers], count=count))

    return handler


async def test_auth_error_after_yielding_what_was_fetched() -> None:
    """Credentials revoked mid-crawl: the snapshots already fetched are yielded, then AuthError is raised."""
    crawler, transport = _crawler(_revoked_after(2, count=6), page_size=2, concurrency=1)
    got: list[str] = []
    async with crawler:
        with pytest.raises(AuthError, match="revoked"):
            async with crawler.crawl(["a", "b", "c"]) as stream:
                await _drain(stream, got)
    assert got == [f"a-snap-{n:05d}" for n in (1, 2, 3, 4)]
    # The crawl stopped on the 401 (resent once, newly signed, as these credentials had been accepted before):
    # no request for b or c.
    assert {request.query["volume_id"] for request in transport.requests} == {"a"}
    assert len(transport.requests) == 4
    assert stream.failures == []


async def test_auth_error_from_crawl_into_after_delivering_pages() -> None:
    """``crawl_into`` hands every fetched page to the sink before raising the AuthError."""
    crawler, _ = _crawler(_revoked_after(2, count=6), page_size=2, concurrency=1)
    sink = RecordingSink()
    async with crawler:
        with pytest.raises(AuthError):
            await crawler.crawl_into(sink=sink, volume_ids=["a", "b"])
    assert not sink.completed  # the crawl did not run to its end
    assert [[snap.id for snap in page.snapshots] for page in sink.pages] == [
        ["a-snap-00001", "a-snap-00002"],
        ["a-snap-00003", "a-snap-00004"],
    ]


def _account_handler(
    account: list[dict[str, Any]], broken: Callable[[dict[str, str], int, int], bool]
) -> FakeTransport:
    """The account listing by offset or marker; pages for which ``broken(query, start, limit)`` answer 500."""

    def handler(url: str, headers: dict[str, str]) -> Response:
        query = query_of(url)
        start, limit = int(query.get("offset", 0)), int(query["limit"])
        if "marker" in query:
            start += next(i for i, snap in enumerate(account) if snap["id"] == query["marker"]) + 1
        if broken(query, start, limit):
            return Response(500, b'{"errors": [{"detail": "this page is broken"}]}')
        return ok(page_body(account[start : start + limit], count=len(account)))

    return FakeTransport(handler)


async def test_account_crawl_repairs_failing_offset_pages() -> None:
    """Account-wide, offset pages that keep failing are repaired by a marker walk: every snapshot, once."""
    account = [snapshot(n, f"v{n % 3}") for n in range(1, 51)]
    transport = _account_handler(account, lambda query, start, limit: "offset" in query and 15 <= start < 30)
    clock = FakeClock()
    async with Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=CREDENTIALS,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        page_size=10,
    ) as crawler:
        snapshots, failures = await collect(crawler, None)
    got = Counter(snap.id for snap in snapshots)
    assert failures == [] and set(got.values()) == {1} and set(got) == {snap["id"] for snap in account}
    assert any("offset" in r.query for r in transport.requests)  # it did go by offset


async def test_account_crawl_with_a_page_that_always_fails() -> None:
    """Account-wide, a page that fails however it is asked for is one named failure (volume None, the account
    listing); the rest arrives, each snapshot once."""
    account = [snapshot(n, f"v{n % 3}") for n in range(1, 51)]
    transport = _account_handler(account, lambda query, start, limit: start <= 24 < start + limit)  # holds the 25th
    clock = FakeClock()
    async with Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=CREDENTIALS,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        page_size=10,
    ) as crawler:
        snapshots, failures = await collect(crawler, None)
    got = Counter(snap.id for snap in snapshots)
    assert set(got.values()) == {1} and account[24]["id"] not in got
    assert len(got) >= len(account) - 2 * 10  # at most the broken page and the seam it leaves
    [failure] = failures
    assert failure.volume_id is None and failure.where == "account listing"
    assert isinstance(failure.error, ServerError) and "this page is broken" in str(failure.error)


async def _chunked(request: web.Request, size: int, body: bytes) -> web.StreamResponse:
    """``body`` padded with JSON whitespace to ``size`` bytes, chunked: no Content-Length."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b" " * (size - len(body)))
    await response.write(body)
    await response.write_eof()
    return response


@pytest.mark.parametrize(("size", "fails"), [(60_000, False), (200_000, True)])
async def test_body_cap_without_content_length(size: int, fails: bool) -> None:
    """A chunked body (no Content-Length) over ``max_body_bytes`` fails its volume; one under the cap decodes."""
    body = page_body([snapshot(1, "v")], count=1)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _chunked(request, size, body)

    with serve_in_thread(handler) as url:
        async with Crawler(endpoint=url, credentials=CREDENTIALS, max_body_bytes=100_000) as crawler:
            snapshots, failures = await collect(crawler, ["v"])
    got = [snap.id for snap in snapshots]
    if fails:
        assert got == [] and len(failures) == 1
        error = failures[0].error
        assert isinstance(error, DecodeError) and "exceeds the cap" in str(error) and error.volume_id == "v"
    else:
        assert got == ["v-snap-00001"] and failures == []


async def test_marker_resume_after_mid_volume_failure_library() -> None:
    """A volume failing on its third page keeps the two pages delivered; pages_done says how far it got."""
    server = PageServer({"v": 25})
    server.fail = lambda query: 500 if query.get("marker") == "v-snap-00020" else None
    with serve_in_thread(server.handle) as url:
        retry = RetryPolicy(max_retries=1, backoff_base=0.01)
        async with Crawler(endpoint=url, credentials=CREDENTIALS, page_size=10, retry=retry) as crawler:
            snapshots, failures = await collect(crawler, ["v"])
    assert [snap.id for snap in snapshots] == server.ids("v")[:20]
    assert failures[0].pages_done == 2 and failures[0].error.page == 3


def test_library_never_configures_structlog() -> None:
    """A whole crawl in a fresh interpreter leaves structlog unconfigured and prints no per-request events."""
    code = """
import anyio, structlog
from snapcrawl import Crawler
from snapcrawl.simulator import Faults, Simulator

async def main() -> None:
    async with Simulator(volumes=40, faults=Faults(error_rate=0.1)) as sim:
        async with Crawler(endpoint=sim.url, credentials=sim.credentials) as crawler:
            async with crawler.crawl(sim.dataset.volume_ids) as stream:
                n = len([s async for s in stream])
    print("RESULT", n == sim.dataset.total, structlog.is_configured(), crawler.stats.retries > 0)

anyio.run(main)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False)  # noqa: S603
    assert result.returncode == 0, result.stderr
    assert "RESULT True False True" in result.stdout
    assert "request.retry" in result.stdout  # retries are still told, on structlog's default output
    events = [line for line in result.stdout.splitlines() if "[debug" in line]
    assert events == []  # but not one line per request
