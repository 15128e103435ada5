"""The only module that touches aiohttp: one pooled session, and aiohttp's errors mapped to ours.

Everything above it sees a :class:`Transport`: ``get(url, headers) -> Response``. Tests may pass their own.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from ._budget import DEFAULT_MAX_BYTES_IN_FLIGHT, ByteBudget, Reservation
from ._exceptions import ConfigError, DecodeError, TransportError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "AiohttpTransport", "HttpOptions", "Response", "Transport"]

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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    """How the HTTP session is made: proxy, trust of the environment, TLS trust, identification; or your own session.

    ``session`` is an ``aiohttp.ClientSession`` of yours, used as it is and never closed; the other options
    shape the session made otherwise.
    """

    ssl_context: ssl.SSLContext | None = None
    ca_bundle: str | None = None
    proxy: str | None = None
    trust_env: bool = False
    user_agent: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    session: aiohttp.ClientSession | None = None


class AiohttpTransport:
    """A keep-alive, connection-limited aiohttp session with a DNS cache and one total timeout per request.

    It never sends a request twice: aiohttp silently resends a GET whose reused connection turns out closed,
    with the same headers, so the same signature would go out twice and a gateway that rejects replays would
    answer 401. Here that resend is off, and the fetcher retries with a fresh signature instead. The body cap
    applies to the decompressed size, so a small gzip body cannot inflate past it. Besides, every body is held
    within ``max_bytes_in_flight``, shared by all requests (see :mod:`._budget`): a reader waits for room before
    it reads, so memory stays bounded whatever the concurrency.

    A session of your own (``options.session``) is used as it is, its resend setting included, and never closed.
    """

    def __init__(
        self,
        *,
        connections: int = 100,
        timeout: float = 30.0,
        verify_tls: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
        options: HttpOptions | None = None,
    ) -> None:
        options = options or HttpOptions()
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        #: Response bytes held at once, across every request of this transport.
        self.budget = ByteBudget(max(max_bytes_in_flight, 1))
        self._proxy = options.proxy
        self._owns_session = options.session is None
        if options.session is not None:
            self._session = options.session
            return
        tls: ssl.SSLContext | bool = verify_tls
        if options.ssl_context is not None:
            tls = options.ssl_context
        elif options.ca_bundle is not None:
            try:
                tls = ssl.create_default_context(cafile=options.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot use {options.ca_bundle} as a CA bundle: {exc}") from None
        connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300, ssl=tls, keepalive_timeout=30)
        default_headers = dict(options.headers)
        if options.user_agent is not None:
            default_headers["User-Agent"] = options.user_agent
        self._session = aiohttp.ClientSession(
            connector=connector,
            # One total deadline instead of aiohttp's several per-phase timers.
            timeout=aiohttp.ClientTimeout(total=timeout),
            auto_decompress=True,
            raise_for_status=False,
            trust_env=options.trust_env,
            headers=default_headers,
        )
        # No hidden resend of a signed request (see the class docstring). aiohttp has no public switch for it;
        # its own test client turns it off the same way.
        if not hasattr(self._session, "_retry_connection"):  # pragma: no cover - guards an aiohttp upgrade
            raise RuntimeError("this aiohttp cannot turn off its resend of requests: snapcrawl needs aiohttp<4")
        self._session._retry_connection = False

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """Send ``GET url`` verbatim (no re-encoding, so the signed URL is the sent URL)."""
        cap = self._max_body_bytes
        try:
            async with self._session.get(
                URL(url, encoded=True), headers=headers, allow_redirects=False, proxy=self._proxy
            ) as resp:
                length = resp.content_length
                if length is not None and length > cap:
                    raise DecodeError(f"response body of {length} bytes exceeds the cap of {cap}")
                with self.budget.reservation() as held:
                    if length is not None and hdrs.CONTENT_ENCODING not in resp.headers:
                        if not held.try_take(length):  # the usual case reserves without a coroutine
                            await held.take(length)
                        body = await resp.read()  # exactly ``length`` bytes, known to be within the cap
                    else:
                        body = await self._read_capped(resp, held)
                answer = resp.headers
                # aiohttp's own case-insensitive names: looked up without being case-folded first
                return Response(resp.status, body, answer.get(hdrs.RETRY_AFTER), answer.get(hdrs.DATE), answer)
        except TimeoutError:
            raise TransportError(f"no answer within the {self._timeout:g} s timeout") from None
        except ssl.SSLError as exc:
            raise TransportError(f"TLS failed: {exc}") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(f"TLS certificate rejected: {exc.certificate_error}") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def _read_capped(self, resp: aiohttp.ClientResponse, held: Reservation) -> bytes:
        """The decompressed body, read chunk by chunk within the budget, abandoned as soon as it passes the cap."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self._max_body_bytes:
                chunks.clear()  # the error's traceback holds this frame
                raise DecodeError(f"response body exceeds the cap of {self._max_body_bytes} bytes (decompressed)")
            await held.take(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session and its connections, unless the caller owns it."""
        if self._owns_session:
            await self._session.close()
