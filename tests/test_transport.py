"""The HTTP seam against raw servers on loopback: no hidden resend, the decompressed-size cap, your own session."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import anyio
import pytest

from snapcrawl import (
    AiohttpTransport,
    AuthError,
    ConfigError,
    Crawler,
    Credentials,
    DecodeError,
    TransportError,
    resolve_endpoint,
)
from snapcrawl._transport import HttpOptions
from snapcrawl.simulator import Simulator

PAGE = b'{"count":1,"snapshots":[{"id":"s1","volume_id":"v","size":1,"created_at":"2025-01-01T00:00:00Z"}]}'
CREDS = Credentials(access_key="AK", secret_key="SK")

Answer = Callable[[int, int], bytes | None]  # (connection number, request number on it) -> raw answer, or drop


@asynccontextmanager
async def raw_server(answer: Answer, seen: list[dict[str, str]]) -> AsyncIterator[str]:
    """A keep-alive HTTP/1.1 server that records each request's headers and answers as ``answer`` says."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number, on_connection = connections, 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                on_connection += 1
                lines = head.decode("latin-1").split("\r\n")[1:]
                seen.append(
                    {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
                )
                raw = answer(number, on_connection)
                if raw is None:  # read the request, then drop the connection without a word
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes = PAGE, *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def test_a_dropped_keep_alive_connection_is_never_answered_by_a_resend() -> None:
    """When a reused connection is dropped after the request was read, no signature ever goes out twice."""
    seen: list[dict[str, str]] = []
    # Every connection answers its first request and drops its second: the case aiohttp silently resends.
    drop_second = raw_server(lambda _conn, nth: ok() if nth == 1 else None, seen)
    async with drop_second as url, Crawler(endpoint=url, credentials=CREDS, concurrency=1) as crawler:
        for _ in range(6):
            got = [s.id async for s in crawler.list_snapshots("v")]
            assert got == ["s1"]
    signatures = Counter(headers["scp-signature"] for headers in seen)
    assert len(seen) > 6 and max(signatures.values()) == 1  # drops happened, and each was retried newly signed


async def test_transport_itself_does_not_resend() -> None:
    """The transport raises on a dropped reused connection instead of sending the same request again."""
    seen: list[dict[str, str]] = []
    async with raw_server(lambda _conn, nth: ok() if nth == 1 else None, seen) as url:
        transport = AiohttpTransport(connections=1)
        try:
            assert (await transport.get(f"{url}/v1/snapshots", {"X-N": "1"})).status == 200
            with pytest.raises(TransportError):
                await transport.get(f"{url}/v1/snapshots", {"X-N": "2"})
        finally:
            await transport.aclose()
    assert [headers["x-n"] for headers in seen] == ["1", "2"]


async def test_body_cap_applies_to_the_decompressed_size() -> None:
    """A small gzip body that inflates past the cap fails by name, whatever its Content-Length says."""
    bomb = gzip.compress(b"[" * 200_000)
    raw = ok(bomb, extra=b"Content-Encoding: gzip\r\n")
    async with raw_server(lambda _conn, _nth: raw, []) as url:
        transport = AiohttpTransport(max_body_bytes=50_000)
        try:
            with pytest.raises(DecodeError, match="decompressed"):
                await transport.get(f"{url}/v1/snapshots", {})
        finally:
            await transport.aclose()
    assert len(bomb) < 50_000  # the compressed length alone would have passed


async def test_gzip_pages_within_the_cap_decode(simulator: Simulator) -> None:
    """A gzip-compressed page under the cap is decompressed and read as usual."""
    raw = ok(gzip.compress(PAGE), extra=b"Content-Encoding: gzip\r\n")
    async with raw_server(lambda _conn, _nth: raw, []) as url, Crawler(endpoint=url, credentials=CREDS) as crawler:
        assert [s.id async for s in crawler.list_snapshots("v")] == ["s1"]


async def test_own_session_is_used_and_left_open(simulator: Simulator) -> None:
    """A session passed in carries the requests and is still open, and usable, after the crawler closes."""
    traced: list[str] = []

    async def on_start(_session: object, _ctx: object, params: aiohttp.TraceRequestStartParams) -> None:
        traced.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        volume_id = simulator.dataset.volume_ids[0]
        async with Crawler(endpoint=simulator.url, credentials=simulator.credentials, session=session) as crawler:
            got = [s async for s in crawler.list_snapshots(volume_id)]
        assert len(got) == simulator.dataset.count(volume_id)
        assert traced and all("/v1/snapshots" in url for url in traced)
        assert not session.closed
        async with session.get(f"{simulator.url}/") as response:  # still usable
            assert response.status in (200, 300)


async def test_user_agent_and_extra_headers_are_sent() -> None:
    """User-Agent and extra headers reach the server next to the signed ones."""
    seen: list[dict[str, str]] = []
    async with (
        raw_server(lambda _conn, _nth: ok(), seen) as url,
        Crawler(endpoint=url, credentials=CREDS, user_agent="inventory/2.1", headers={"X-Team": "sre"}) as crawler,
    ):
        [s async for s in crawler.list_snapshots("v")]
    assert seen[0]["user-agent"] == "inventory/2.1" and seen[0]["x-team"] == "sre" and "scp-signature" in seen[0]


def test_session_and_transport_options_do_not_mix() -> None:
    """Settings the crawler cannot apply to a session it does not own are refused by name."""
    with pytest.raises(ConfigError, match="on that session"):
        Crawler(endpoint="http://x", credentials=CREDS, session=object(), proxy="http://proxy:3128")  # type: ignore[arg-type]


def test_unreadable_ca_bundle_is_a_named_error(tmp_path: anyio.Path) -> None:
    """A CA bundle that cannot be loaded is a ConfigError naming the file."""
    missing = f"{tmp_path}/nope.pem"
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        AiohttpTransport(options=HttpOptions(ca_bundle=missing))


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("https://VirtualServer.Example.COM:443", "https://virtualserver.example.com"),
        ("http://Host:80/", "http://host"),
        ("https://host:8443/base/", "https://host:8443/base"),
        ("HTTP://[::1]:80", "http://[::1]"),
    ],
)
def test_endpoint_is_normalised_to_what_goes_on_the_wire(written: str, normalised: str) -> None:
    """Upper-case hosts and default ports are written as HTTP libraries send them, so the signature matches."""
    assert resolve_endpoint(written) == normalised


async def test_upper_case_host_and_default_port_sign_what_is_sent(simulator: Simulator) -> None:
    """An endpoint written ``HTTP://LOCALHOST:PORT/`` is accepted by the strict simulator, which checks signatures."""
    port = simulator.url.rsplit(":", 1)[1]
    volume_id = simulator.dataset.volume_ids[0]
    async with Crawler(endpoint=f"HTTP://LOCALHOST:{port}/", credentials=simulator.credentials) as crawler:
        got = [s async for s in crawler.list_snapshots(volume_id)]
    assert len(got) == simulator.dataset.count(volume_id)


def unauthorized() -> bytes:
    body = b'{"errors":[{"code":"Unauthorized","detail":"replayed signature","status":401}]}'
    return b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def test_a_401_after_acceptance_is_retried_once_newly_signed() -> None:
    """Once the credentials have been accepted, a lone 401 gets one more attempt with a fresh signature."""
    seen: list[dict[str, str]] = []
    answers = iter([ok(), unauthorized(), ok()])
    async with (
        raw_server(lambda _conn, _nth: next(answers), seen) as url,
        Crawler(endpoint=url, credentials=CREDS) as crawler,
    ):
        assert [s.id async for s in crawler.list_snapshots("v")] == ["s1"]
        assert [s.id async for s in crawler.list_snapshots("v")] == ["s1"]
    assert len(seen) == 3 and seen[1]["scp-signature"] != seen[2]["scp-signature"]


async def test_a_401_that_persists_stops_with_auth_error() -> None:
    """A 401 that comes back on the fresh attempt too is an AuthError, after exactly one resend."""
    seen: list[dict[str, str]] = []
    answers = iter([ok(), unauthorized(), unauthorized(), ok()])
    async with (
        raw_server(lambda _conn, _nth: next(answers), seen) as url,
        Crawler(endpoint=url, credentials=CREDS) as crawler,
    ):
        assert [s.id async for s in crawler.list_snapshots("v")] == ["s1"]
        with pytest.raises(AuthError, match="credentials rejected"):
            [s async for s in crawler.list_snapshots("v")]
    assert len(seen) == 3


async def test_a_401_before_any_acceptance_is_not_resent() -> None:
    """Credentials never accepted: the first 401 (with no clock skew in sight) stops at once."""
    seen: list[dict[str, str]] = []
    async with (
        raw_server(lambda _conn, _nth: unauthorized(), seen) as url,
        Crawler(endpoint=url, credentials=CREDS) as crawler,
    ):
        with pytest.raises(AuthError):
            [s async for s in crawler.list_snapshots("v")]
    assert len(seen) == 1
