"""The only module that touches aiohttp: one pooled session, and aiohttp's errors mapped to ours.

Everything above it sees a :class:`Transport`: ``get(url, headers) -> Response``. Tests may pass their own.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol

import aiohttp
from yarl import URL

from ._exceptions import DecodeError, TransportError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "AiohttpTransport", "Response", "Transport"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Response(NamedTuple):
    """A complete HTTP answer: status, the headers snapcrawl reads, and the whole body.

    ``headers`` holds every response header (case-insensitive names), for rate-limit fields and the like.
    """

    status: int
    body: bytes
    retry_after: str | None = None
    date: str | None = None
    headers: Mapping[str, str] = _NO_HEADERS


class Transport(Protocol):
    """Sends one GET and returns the whole answer; raises :class:`TransportError` when none arrives."""

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """Send ``GET url`` with exactly ``headers``; ``url`` goes on the wire verbatim."""
        ...

    async def aclose(self) -> None:
        """Release every connection."""
        ...


class AiohttpTransport:
    """A keep-alive, connection-limited aiohttp session with a DNS cache and one total timeout per request."""

    def __init__(
        self,
        *,
        connections: int = 100,
        timeout: float = 30.0,
        verify_tls: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        connector = aiohttp.TCPConnector(
            limit=connections,
            ttl_dns_cache=300,
            ssl=verify_tls,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # One total deadline instead of aiohttp's several per-phase timers.
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=True,
            raise_for_status=False,
        )

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """Send ``GET url`` verbatim (no re-encoding, so the signed URL is the sent URL)."""
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as resp:
                length = resp.content_length
                if length is not None and length > self._max_body_bytes:
                    raise DecodeError(f"response body of {length} bytes exceeds the cap of {self._max_body_bytes}")
                body = await resp.read() if length is not None else await self._read_capped(resp)
                answer = resp.headers
                return Response(resp.status, body, answer.get("Retry-After"), answer.get("Date"), answer)
        except TimeoutError:
            raise TransportError(f"no answer within the {self._timeout:g} s timeout") from None
        except ssl.SSLError as exc:
            raise TransportError(f"TLS failed: {exc}") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise DecodeError(f"response body exceeds the cap of {self._max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        await self._session.close()
