"""The errors snapcrawl raises, one tree rooted at :class:`SnapcrawlError`.

::

    SnapcrawlError                 anything snapcrawl raises on purpose
    ├── ConfigError                bad or missing settings, caught before any request
    ├── ApiError                   the server answered with an error status
    │   ├── AuthError              401/403, or the gateway's 404 for an unauthenticated call
    │   ├── BadRequestError        400: the server rejected the request (``detail`` says why)
    │   ├── NotFoundError          404 from the API itself
    │   ├── ThrottledError         429: too many requests (``retry_after`` in seconds)
    │   └── ServerError            5xx
    ├── TransportError             no usable answer: connection refused or dropped, timeout
    ├── DecodeError                the answer is not a valid snapshot page
    ├── PaginationError            the server's pages do not advance (would loop forever)
    ├── SinkError                  the destination (file or database) failed; ``destination`` names it
    └── UnfitValueError            a snapshot holds a value the destination cannot store: its volume fails

Errors raised while crawling carry the ``volume_id`` (``None`` for the account-wide listing) and the 1-based
``page`` they concern, and mention both in their message. ``retryable`` tells whether the same request may
succeed later (throttling, 500/502/503/504, transport failures, a garbled body). No error holds a secret.

Messages name parameters as the library spells them (``sort``, ``page_size``), never command-line flags: an error
about a setting lists it in ``options``, and :meth:`SnapcrawlError.render` spells each one another way (the CLI
passes its flags, ``--sort``, in one place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from ._text import shorten

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "DecodeError",
    "NotFoundError",
    "PaginationError",
    "ServerError",
    "SinkError",
    "SnapcrawlError",
    "ThrottledError",
    "TransportError",
    "UnfitValueError",
]


class SnapcrawlError(Exception):
    """Base class of every error snapcrawl raises on purpose."""

    retryable: bool = False

    def __init__(
        self, message: str, *, volume_id: str | None = None, page: int | None = None, options: tuple[str, ...] = ()
    ) -> None:
        # ``{option}`` in ``message`` stands for each parameter in ``options``, spelled when rendered.
        self._template = message
        #: The parameters this error is about (``("sort",)``), named in its message.
        self.options = options
        self.message = self._spelled(str) if options else message
        super().__init__(self.message)
        self.volume_id = volume_id
        self.page = page

    def _spelled(self, spell: Callable[[str], str]) -> str:
        if not self.options:
            return self.message
        text = self._template
        for option in self.options:
            text = text.replace(f"{{{option}}}", spell(option))
        return text

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each of ``options`` spelled by ``spell`` (``str`` gives ``str(self)``)."""
        message = self._spelled(spell)
        where = []
        if self.volume_id is not None:
            where.append(f"volume {self.volume_id}")
        if self.page is not None:
            where.append(f"page {self.page}")
        return f"{message} ({', '.join(where)})" if where else message

    def __str__(self) -> str:
        return self.render(str)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class ConfigError(SnapcrawlError):
    """Settings are missing or invalid; raised before any request is sent."""


class ApiError(SnapcrawlError):
    """The server answered with an error status.

    ``request_id`` is the server's id for the failed request (quote it to support), ``detail`` the server's own
    explanation, and ``retry_after`` the wait in seconds its ``Retry-After`` header asked for, if any.
    """

    retryable_statuses: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
        volume_id: str | None = None,
        page: int | None = None,
    ) -> None:
        super().__init__(message, volume_id=volume_id, page=page)
        self.status = status
        self.request_id = request_id
        self.detail = detail
        self.retry_after = retry_after
        self.retryable = status in self.retryable_statuses


class AuthError(ApiError):
    """The server rejected the credentials or the signature (401, 403, or the gateway's 404)."""


class BadRequestError(ApiError):
    """The server rejected the request as invalid (400). Named so as not to clash with httpx's transport error."""


class NotFoundError(ApiError):
    """The API answered 404 for something other than authentication."""


class ThrottledError(ApiError):
    """The server is throttling us (429)."""

    retryable_statuses = frozenset({429})


class ServerError(ApiError):
    """The server failed (5xx); 500, 502, 503 and 504 are retried."""

    retryable_statuses = frozenset({500, 502, 503, 504})


class TransportError(SnapcrawlError):
    """No usable answer arrived: the connection failed or dropped, or the request timed out."""

    retryable = True


class DecodeError(SnapcrawlError):
    """A response body is not a valid snapshot page; ``field`` names the offending JSON path, if known."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retryable: bool = False,
        volume_id: str | None = None,
        page: int | None = None,
    ) -> None:
        super().__init__(message, volume_id=volume_id, page=page)
        self.field = field
        self.retryable = retryable


class PaginationError(SnapcrawlError):
    """The server's pages stopped advancing (a page repeated or the marker did not move)."""


class SinkError(SnapcrawlError):
    """The destination failed: unreachable, credentials refused, read-only, full, or in use by another run.

    ``destination`` names it without any password. What was committed before the error stays committed; what
    was buffered is not committed, and a resumed crawl fetches it again.
    """

    def __init__(
        self, message: str, *, destination: str, volume_id: str | None = None, options: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"{destination}: {message}", volume_id=volume_id, options=options)
        self.destination = destination


class UnfitValueError(SnapcrawlError):
    """A snapshot holds a value the destination cannot store (a NUL in PostgreSQL text, an integer past 64 bits).

    Raised before any row of the page is taken, so nothing else is lost: the crawl fails that snapshot's volume
    (in the account-wide listing, it names the snapshot's volume and stores the rest), and every other volume's
    rows are committed. ``snapshot_id`` and ``field`` name the value; ``destination`` the destination.
    """

    def __init__(self, why: str, *, destination: str, snapshot_id: str, snapshot_volume: str, field: str) -> None:
        super().__init__(f"{destination}: snapshot {shorten(snapshot_id)}: {field} {why}", volume_id=snapshot_volume)
        self.destination = destination
        self.snapshot_id = snapshot_id
        self.field = field


def detach(error: SnapcrawlError) -> SnapcrawlError:
    """``error`` without its traceback and the exception it was raised from, to be kept (a volume's failure) or
    waited on (a retry): those hold the frames that read the failed answer, and a hostile server's answer may be
    tens of megabytes."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


def unwrap_group(exc: BaseException) -> BaseException:
    """The lone exception inside (nested) single-member exception groups, as a task group wraps it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
