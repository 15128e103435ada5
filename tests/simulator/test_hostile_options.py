"""The hostile options: replay protection, drops after the request was read, gzip and gzip bombs, page caps, TLS."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import time

import aiohttp
import msgspec
import pytest
import trustme

from snapcrawl.simulator import Faults, Simulator
from snapcrawl.simulator.server import _Replays
from tests.simulator.helpers import Api, biggest_volume, demo_signer, empty_volume, wait_for

# -- replays ---------------------------------------------------------------------------------------------------


async def test_reused_signature_is_refused_when_protected(api: Api, simulator: Simulator) -> None:
    """The same (timestamp, signature) pair twice: 401 the second time with replay protection, 200 without."""
    url = f"{simulator.url}/v1/snapshots"
    headers = demo_signer().headers("GET", url)
    simulator.faults = Faults(reject_replays=True)
    first = await api.get(signer=None, headers=dict(headers))
    second = await api.get(signer=None, headers=dict(headers))
    assert (first.status, second.status) == (200, 401)
    (error,) = second.json()["errors"]
    assert (error["code"], error["status"]) == ("Unauthorized", 401)
    assert "Replayed" in error["detail"]
    assert simulator.stats.replayed == 1
    assert (await api.get()).status == 200  # a fresh signature is fine
    simulator.faults = Faults()
    assert (await api.get(signer=None, headers=dict(headers))).status == 200


def test_replay_memory_forgets_pairs_older_than_the_window() -> None:
    """Pairs are remembered while their timestamp is within the window of the server's clock, then forgotten."""
    replays = _Replays()
    now = int(time.time() * 1000)
    assert not replays.seen(str(now - 2000), "a", 300.0)
    assert not replays.seen(str(now - 1000), "b", 300.0)
    assert replays.seen(str(now - 2000), "a", 300.0)
    assert len(replays) == 2
    assert not replays.seen(str(now - 400_000), "old", 300.0)  # already outside: refused for skew, not kept
    assert len(replays) == 2
    assert not replays.seen(str(now + 3_600_000), "c", 0.5)  # a half-second window forgets both earlier pairs
    assert len(replays) == 1
    assert not replays.seen("12x", "d", 300.0)


# -- drops -----------------------------------------------------------------------------------------------------


async def test_drop_resend_on_keep_alive_is_a_replay(session: aiohttp.ClientSession, simulator: Simulator) -> None:
    """A drop on a pooled connection makes aiohttp resend the very same signed request: the server sees a replay."""
    api = Api(session, simulator.url, demo_signer())
    assert (await api.get({"limit": "1"})).status == 200  # now a keep-alive connection is pooled
    simulator.faults = Faults(drop_rate=1.0, reject_replays=True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.get({"limit": "1"})
    stats = simulator.stats
    assert (stats.requests, stats.dropped, stats.replayed) == (3, 2, 1)


def test_drop_closes_only_after_the_request_was_read(simulator: Simulator) -> None:
    """A dropped request's connection stays open until its body has arrived, then closes without an answer."""
    simulator.faults = Faults(drop_rate=1.0)
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=30) as raw:
        raw.sendall(b"GET /v1/snapshots HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        asyncio.run(wait_for(lambda: simulator.stats.requests == 1))
        raw.setblocking(False)
        with pytest.raises(BlockingIOError):
            raw.recv(1)  # still open, nothing answered: the server waits for the body
        raw.setblocking(True)
        raw.sendall(b"hello")
        assert raw.recv(1024) == b""
    assert simulator.stats.dropped == 1
    assert not simulator.stats.by_status


# -- gzip ------------------------------------------------------------------------------------------------------


async def test_gzip_for_clients_that_accept_it(simulator: Simulator) -> None:
    """With ``gzip`` on, a body is gzip-compressed when the client accepts gzip, and plain otherwise."""
    simulator.faults = Faults(gzip=True)
    async with aiohttp.ClientSession(auto_decompress=False) as raw_session:
        raw = Api(raw_session, simulator.url, demo_signer())
        compressed = await raw.get({"limit": "50"}, headers={"Accept-Encoding": "gzip, deflate"})
        plain = await raw.get({"limit": "50"}, headers={"Accept-Encoding": "identity"})
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(compressed.body) == plain.body
    assert len(compressed.body) < len(plain.body)


@pytest.mark.parametrize(
    ("accept", "compressed"),
    [("gzip", True), ("br, GZIP;q=0.5", True), ("*", True), ("gzip;q=0", False), ("deflate", False), ("", False)],
)
async def test_gzip_follows_accept_encoding(simulator: Simulator, accept: str, compressed: bool) -> None:
    """gzip is used when Accept-Encoding names it (or ``*``) with a non-zero quality."""
    simulator.faults = Faults(gzip=True)
    async with aiohttp.ClientSession(auto_decompress=False) as raw_session:
        reply = await Api(raw_session, simulator.url, demo_signer()).get(headers={"Accept-Encoding": accept})
    assert (reply.headers.get("Content-Encoding") == "gzip") is compressed


async def test_gzip_is_off_by_default(api: Api) -> None:
    """Without the option nothing is compressed, even for a client that accepts gzip."""
    reply = await api.get({"limit": "50"}, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in reply.headers


async def test_bomb_volume_sends_a_small_body_that_inflates_hugely(simulator: Simulator) -> None:
    """A bomb volume's page is a few KiB of gzip that inflates to ``bomb_bytes`` of a valid empty page."""
    volume = biggest_volume(simulator.dataset)
    simulator.faults = Faults(bomb_volumes=frozenset({volume}), bomb_bytes=8 * 1024 * 1024)
    async with aiohttp.ClientSession(auto_decompress=False) as raw_session:
        reply = await Api(raw_session, simulator.url, demo_signer()).get({"volume_id": volume})
    assert reply.status == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    assert len(reply.body) < 64 * 1024
    inflated = gzip.decompress(reply.body)
    assert len(inflated) == 8 * 1024 * 1024
    assert msgspec.json.decode(inflated) == {"count": 0, "snapshots": []}


# -- page size cap ---------------------------------------------------------------------------------------------


async def test_max_limit_caps_every_page(api: Api, simulator: Simulator) -> None:
    """With ``max_limit`` pages hold at most that many snapshots whatever the client asks; the count is whole."""
    volume = biggest_volume(simulator.dataset)
    simulator.faults = Faults(max_limit=7)
    page = await api.page(volume_id=volume, limit="50")
    assert len(page["snapshots"]) == 7
    assert page["count"] == simulator.dataset.count(volume)
    assert len((await api.page(volume_id=volume, limit="3"))["snapshots"]) == 3
    assert (await api.page(volume_id=empty_volume(simulator.dataset)))["snapshots"] == []


def test_max_limit_must_be_positive() -> None:
    """A cap below one snapshot a page is refused."""
    with pytest.raises(ValueError, match="max_limit"):
        Faults(max_limit=0)


# -- TLS -------------------------------------------------------------------------------------------------------


async def test_tls_with_a_self_signed_certificate() -> None:
    """With an SSL context the simulator serves HTTPS and checks signatures over the https URL."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    async with (
        Simulator(volumes=5, seed=2, ssl_context=server) as sim,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session,
    ):
        assert sim.url.startswith("https://127.0.0.1:")
        api = Api(session, sim.url, demo_signer())
        assert (await api.get({"limit": "1"})).status == 200
        root = (await api.get(path="/", signer=None)).json()
        assert root["versions"][0]["links"][0]["href"].startswith("https://")
        signed_for_http = demo_signer().headers("GET", sim.url.replace("https", "http") + "/v1/snapshots")
        assert (await api.get(signer=None, headers=dict(signed_for_http))).status == 401
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with aiohttp.ClientSession() as untrusting, untrusting.get(sim.url + "/"):
                pass
