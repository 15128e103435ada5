"""Request signing exactly as SCP's official SDK does it; pure functions, no I/O.

message   = METHOD + URL + TIMESTAMP + ACCESS_KEY + ACCOUNT_ID + CLIENT_TYPE
signature = base64(HMAC-SHA256(secret_key, message))

``URL`` is the full URL as it goes on the wire, query included, so the query is built once here
(:func:`encode_query`, like Go's ``url.Values.Encode``) and sent verbatim.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote_plus

from ._config import Credentials

__all__ = ["DEFAULT_CLIENT_TYPE", "Signer", "encode_query", "make_signature"]

DEFAULT_CLIENT_TYPE = "Openapi"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def query_escape(text: str) -> str:
    """Go's ``QueryEscape``; ids and numbers, which need no escaping, skip the slow path."""
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text, safe="")


def encode_query(params: Mapping[str, str]) -> str:
    """Encode query parameters like Go's ``url.Values.Encode``: keys sorted, ``QueryEscape``-d values."""
    return "&".join([f"{query_escape(key)}={query_escape(value)}" for key, value in sorted(params.items())])


def make_signature(
    *,
    method: str,
    url: str,
    timestamp: str,
    access_key: str,
    secret_key: str,
    account_id: str = "",
    client_type: str = DEFAULT_CLIENT_TYPE,
) -> str:
    """Return the ``Scp-Signature`` value for one request, byte-for-byte as the official SDK computes it."""
    message = f"{method}{url}{timestamp}{access_key}{account_id}{client_type}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class Signer:
    """Build the signed headers of a request at the moment it is sent.

    The HMAC key schedule is computed once and copied per request: HMAC-SHA256 (RFC 2104) as its two SHA-256
    states, keyed once, which ``hashlib`` copies for a third of what copying an ``hmac`` object costs (0.9 us
    against 2.4 us a signature, measured). ``clock_offset`` (seconds) is added to the local clock, so a measured
    clock skew can be corrected without touching the system clock.
    """

    __slots__ = (
        "_base_headers",
        "_clock",
        "_inner",
        "_last_ms",
        "_outer",
        "_signed_at_last",
        "_suffix",
        "clock_offset",
    )

    def __init__(
        self,
        credentials: Credentials,
        *,
        api_version: str,
        client_type: str = DEFAULT_CLIENT_TYPE,
        language: str = "en-US",
        clock: Callable[[], float] = time.time,
    ) -> None:
        account_id = credentials.account_id or ""
        self._inner, self._outer = _hmac_sha256_states(credentials.secret_key.encode())
        self._suffix = f"{credentials.access_key}{account_id}{client_type}".encode()
        self._clock = clock
        self.clock_offset = 0.0
        self._last_ms = 0
        self._signed_at_last: set[str] = set()  # requests signed with ``_last_ms``, as METHOD + URL
        headers = {
            "Scp-Accesskey": credentials.access_key,
            "Scp-ClientType": client_type,
            "Scp-Api-Version": f"virtualserver {api_version}",
            "Accept-Language": language,
            "Accept": "application/json",
        }
        if account_id:
            headers["Scp-AccountId"] = account_id
        if credentials.auth_token:
            headers["X-Auth-Token"] = credentials.auth_token
        self._base_headers = headers

    def now(self) -> float:
        """The current Unix time in seconds, corrected by ``clock_offset``."""
        return self._clock() + self.clock_offset

    def timestamp(self) -> str:
        """The current (offset-corrected) Unix time in milliseconds, as sent in ``Scp-Timestamp``."""
        return str(int(self.now() * 1000))

    def _unique_ms(self, request: str) -> int:
        """A millisecond timestamp never used before for ``request``: no two signatures are ever the same.

        Timestamps have a millisecond's resolution, so the same URL signed twice within one (a retry, or a page
        asked for again) would carry the same signature, which a gateway that rejects replays refuses. The
        timestamp then moves on by a millisecond, and does not step back into milliseconds already handed out,
        unless the clock moved back by more than a second: a corrected clock skew, which it follows.
        """
        ms = int(self.now() * 1000)
        if ms > self._last_ms or ms < self._last_ms - 1000:
            self._last_ms = ms
            self._signed_at_last = {request}
        elif request not in self._signed_at_last:
            self._signed_at_last.add(request)
        else:
            self._last_ms += 1
            self._signed_at_last = {request}
        return self._last_ms

    def headers(self, method: str, url: str) -> dict[str, str]:
        """Return a fresh set of signed headers for ``method`` on the exact wire ``url``; never one used before."""
        timestamp = str(self._unique_ms(method + url))
        inner = self._inner.copy()
        inner.update(f"{method}{url}{timestamp}".encode())
        inner.update(self._suffix)
        outer = self._outer.copy()
        outer.update(inner.digest())
        headers = self._base_headers.copy()
        headers["Scp-Timestamp"] = timestamp
        headers["Scp-Signature"] = binascii.b2a_base64(outer.digest(), newline=False).decode("ascii")
        return headers


_BLOCK = 64  # SHA-256's block size, in bytes


def _hmac_sha256_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """The inner and outer SHA-256 states of HMAC-SHA256 keyed with ``key`` (RFC 2104): a message's MAC is
    ``outer.copy().update(inner.copy().update(message).digest())``, equal to ``hmac.new(key, message, sha256)``."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD))
    outer = hashlib.sha256(key.translate(_OPAD))
    return inner, outer


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
