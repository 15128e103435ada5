"""An HTTP answer -> the error tree: status, SCP's error envelope, ``Retry-After`` and ``Date``. No I/O.

Times from the server (``Retry-After`` as an HTTP date, ``Date``) are read against the *corrected* clock: the local
wall clock plus the skew measured from the server's ``Date``, so a machine whose clock is minutes off neither
waits minutes nor ignores the wait the server asked for.
"""

from __future__ import annotations

import email.utils
import math
from typing import Final

from ._exceptions import (
    ApiError,
    AuthError,
    BadRequestError,
    NotFoundError,
    ServerError,
    ThrottledError,
)
from ._models import decode_error_body
from ._text import clip
from ._transport import Response

__all__ = ["AUTH_HINT", "MAX_RETRY_AFTER", "error_for_response", "http_date", "parse_retry_after", "query_option"]

#: The longest Retry-After honoured, in seconds; a longer one is clipped to this.
MAX_RETRY_AFTER: Final = 300.0

AUTH_HINT: Final = (
    "check the access key and secret key (and account id, if set), and that this machine's clock is correct: "
    "SCP rejects signatures whose timestamp is more than a few minutes off"
)

#: Query parameters the crawler sends on the user's behalf, and the crawler's parameter that sets each.
_QUERY_OPTIONS: Final = {"sort": "sort", "name": "name", "limit": "page_size", "with_count": "with_count"}


def http_date(value: str | None) -> float | None:
    """Unix time of an HTTP date, or ``None`` when absent or not a date."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP date); ``None`` if absent or unreadable.

    ``now`` is the corrected Unix time: an HTTP date is a moment on the server's clock.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = http_date(value)
        if when is None:
            return None
        seconds = when - now
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_for_response(response: Response, *, volume_id: str | None, page: int | None, now: float) -> ApiError:
    """Map an error status to the error tree, with the server's detail and request id when its body has them."""
    status = response.status
    body = decode_error_body(response.body) if response.body[:1] == b"{" else None
    detail = body.detail if body else None
    request_id = body.first_request_id if body else None
    is_gateway = body is not None and not body.errors and body.error is not None
    explained = f"HTTP {status}: {clip(detail)}" if detail else f"HTTP {status}"
    cls: type[ApiError]
    if status in (401, 403) or (status == 404 and is_gateway):
        cls, message = AuthError, f"credentials rejected ({explained}); {AUTH_HINT}"
    elif status == 400:
        cls, message = BadRequestError, f"request rejected ({explained})"
    elif status == 404:
        cls, message = NotFoundError, f"not found ({explained})"
    elif status == 429:
        cls, message = ThrottledError, f"throttled ({explained})"
    elif status >= 500:
        cls, message = ServerError, f"server error ({explained})"
    else:
        cls, message = ApiError, f"unexpected answer ({explained})"
    return cls(
        message,
        status=status,
        detail=detail,
        request_id=request_id,
        # An HTTP-date Retry-After is a moment on the server's clock: read it against the same answer's Date when
        # there is one (no local clock involved at all), else against the corrected clock.
        retry_after=parse_retry_after(response.retry_after, now=http_date(response.date) or now),
        volume_id=volume_id,
        page=page,
    )


def query_option(error: BadRequestError, params: dict[str, str]) -> str | None:
    """The option behind a 400 that is about the query itself (so every volume would fail alike), if any.

    A detail such as ``sort: unknown key 'sizee'`` names a parameter the user chose; ``volume_id`` or ``marker``
    would be about one volume or one page, and are not.
    """
    detail = (error.detail or "").lower()
    for key, option in _QUERY_OPTIONS.items():
        if key in params and (detail.startswith(key) or f"'{key}'" in detail or f"{key}:" in detail):
            return option
    return None
