"""Rate-limit response headers -> the quota a server announces; anything unreadable is ignored, never raised.

Two families are read:

* the IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "default";q=100;w=1``
  (``q`` requests per ``w`` seconds; several policies may be listed) and ``RateLimit: "default";r=50;t=1``
  (``r`` requests remaining, ``t`` seconds until the window resets);
* the common ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` triple. Its limit is taken per second (as the
  gateways that send it without a window mean it); its reset may be delta seconds or a Unix epoch.

Where several policies are announced, the tightest rate governs, and the smallest remaining count with it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

__all__ = ["Quota", "read_quota"]

#: A reset value above this is a Unix epoch, not a delta (about 2001-09-09; no window is 31 years long).
_EPOCH_THRESHOLD = 1e9


@dataclasses.dataclass(frozen=True, slots=True)
class Quota:
    """What the server announced: its rate (requests/s), requests left in the window, seconds until it resets.

    Any of them may be ``None`` when the server did not say (or said something unreadable).
    """

    rate: float | None = None
    remaining: float | None = None
    reset: float | None = None


def read_quota(headers: Mapping[str, str], *, wall_now: float) -> Quota | None:
    """The quota in ``headers`` (case-insensitive names), or ``None`` if they announce none.

    ``wall_now`` (Unix seconds) turns an epoch reset into seconds from now.
    """
    ietf_policy = _header(headers, "RateLimit-Policy")
    ietf_state = _header(headers, "RateLimit")
    x_limit = _header(headers, "X-RateLimit-Limit")
    x_remaining = _header(headers, "X-RateLimit-Remaining")
    x_reset = _header(headers, "X-RateLimit-Reset")
    if ietf_policy is None and ietf_state is None and x_limit is None and x_remaining is None:
        return None
    rates: list[float] = []
    remaining: list[tuple[float, float | None]] = []
    if ietf_policy is not None:
        for params in _sf_list(ietf_policy):
            quota, window = _number(params.get("q")), _number(params.get("w"))
            if quota is not None and window is None:
                window = 1.0  # the draft's default window is unspecified; per second is what a bucket means
            if quota is not None and window is not None and window > 0:
                rates.append(quota / window)
    if ietf_state is not None:
        for params in _sf_list(ietf_state):
            left = _number(params.get("r"))
            if left is not None:
                remaining.append((left, _number(params.get("t"))))
    limit = _number(x_limit)
    if limit is not None and limit > 0:
        rates.append(limit)
    left = _number(x_remaining)
    if left is not None:
        reset = _number(x_reset)
        if reset is not None and reset > _EPOCH_THRESHOLD:
            reset = max(reset - wall_now, 0.0)
        remaining.append((left, reset))
    if not rates and not remaining:
        return None
    tightest = min(remaining, key=lambda item: item[0]) if remaining else (None, None)
    return Quota(rate=min(rates) if rates else None, remaining=tightest[0], reset=tightest[1])


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """One header's value; aiohttp's headers are case-insensitive, a plain dict may not be."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value if isinstance(value, str) else None


def _number(text: str | None) -> float | None:
    """A finite, non-negative number, or ``None`` for anything else (a structured-field string included)."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _sf_list(text: str) -> list[dict[str, str]]:
    """The parameters of each member of a structured-field list (RFC 8941), leniently: bad members are skipped.

    Commas inside quoted strings do not split members; parameter values keep their raw text.
    """
    members: list[dict[str, str]] = []
    for member in _split_outside_quotes(text, ","):
        parts = _split_outside_quotes(member, ";")
        params: dict[str, str] = {}
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if key and sep:
                params[key] = value.strip()
        if parts[0].strip() or params:
            members.append(params)
    return members


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces
