"""Wire models: msgspec Structs for the API's JSON, and the decoders, built once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any, Final

import msgspec
from msgspec.structs import force_setattr

from ._exceptions import DecodeError, SnapcrawlError
from ._stats import CrawlStats
from ._text import shorten

__all__ = [
    "CrawlResult",
    "ErrorBody",
    "Page",
    "Snapshot",
    "SnapshotPage",
    "VolumeFailure",
    "decode_error_body",
    "decode_page",
]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One volume snapshot, with the API's field names. Timestamps are timezone-aware UTC datetimes."""

    id: str
    volume_id: str
    size: int
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
    status: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | str | None = None
    user_id: str | None = None

    def __post_init__(self) -> None:
        # The API documents naive timestamps as UTC; every datetime becomes UTC, so they compare and encode alike.
        # msgspec gives "Z" and "+00:00" the ``dt.UTC`` singleton: the usual case costs one identity test each.
        if self.created_at.tzinfo is not _UTC:
            force_setattr(self, "created_at", _utc(self.created_at, self.id, "created_at"))
        if self.updated_at is not None and self.updated_at.tzinfo is not _UTC:
            force_setattr(self, "updated_at", _utc(self.updated_at, self.id, "updated_at"))


_UTC: Final = dt.UTC


def _utc(value: dt.datetime, snapshot_id: str, field: str) -> dt.datetime:
    """``value`` in UTC (naive means UTC); a ``ValueError`` naming the snapshot when UTC cannot hold it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    try:
        return value.astimezone(_UTC)
    except OverflowError:
        # Year 1 at +01:00 is year 0 in UTC, 9999-12-31 at -02:00 is year 10000: no datetime holds either.
        raise ValueError(
            f"snapshot {shorten(snapshot_id)}: {field} {value.isoformat()} is outside years 1-9999 once in UTC"
        ) from None


class Page(msgspec.Struct, frozen=True):
    """One page as it arrived: its volume (``None`` for the account-wide listing), its 1-based number within
    this run, its snapshots, and whether it was the volume's last."""

    volume_id: str | None
    number: int
    snapshots: list[Snapshot]
    last: bool

    @property
    def marker(self) -> str | None:
        """The id of the page's last snapshot: where the listing goes on from."""
        return self.snapshots[-1].id if self.snapshots else None


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeFailure:
    """A volume the crawl gave up on: its id (``None`` for the account-wide listing), the error, and how many
    of its pages had already been delivered."""

    volume_id: str | None
    error: SnapcrawlError
    pages_done: int

    @property
    def where(self) -> str:
        """``volume <id>``, or ``account listing``."""
        return "account listing" if self.volume_id is None else f"volume {self.volume_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class CrawlResult:
    """What one finished crawl did: its own counts and its own failures."""

    stats: CrawlStats
    failures: list[VolumeFailure]


class SnapshotPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of ``GET /v1/snapshots``; ``count`` is the total matching, when the server sent it."""

    snapshots: list[Snapshot]
    count: int | None = None


class ErrorItem(msgspec.Struct, kw_only=True):
    """One entry of the API's ``errors`` list."""

    code: str | None = None
    title: str | None = None
    detail: str | list[str] | None = None
    status: int | None = None
    request_id: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """An error answer: the API's ``{"errors": [...]}`` or the gateway's ``{"error", "requestId"}`` shape."""

    errors: list[ErrorItem] = msgspec.field(default_factory=list)
    error: str | None = None
    request_id: str | None = msgspec.field(default=None, name="requestId")

    @property
    def detail(self) -> str | None:
        """The server's explanation, flattened to one string."""
        parts: list[str] = []
        for item in self.errors:
            detail = item.detail
            if isinstance(detail, list):
                parts.extend(detail)
            elif detail:
                parts.append(detail)
            elif item.title:
                parts.append(item.title)
        if not parts and self.error:
            parts.append(self.error)
        return "; ".join(parts) or None

    @property
    def first_request_id(self) -> str | None:
        """The server's request id, whichever shape carried it."""
        return next((item.request_id for item in self.errors if item.request_id), self.request_id)


_page_decoder: Final = msgspec.json.Decoder(SnapshotPage)
_error_decoder: Final = msgspec.json.Decoder(ErrorBody)
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def _field_of(error: msgspec.ValidationError) -> str | None:
    """The JSON path msgspec blames, completed with the name of a missing field."""
    text = str(error)
    path = match["path"] if (match := _PATH.search(text)) else None
    if missing := _MISSING.search(text):
        return f"{path}.{missing['name']}" if path else missing["name"]
    return path


def decode_page(body: bytes, *, volume_id: str | None = None, page: int | None = None) -> SnapshotPage:
    """Decode a page body; any problem becomes a :class:`DecodeError` naming the field, volume and page."""
    try:
        return _page_decoder.decode(body)
    except RecursionError:
        # msgspec counts nesting against Python's recursion limit, even inside fields it skips: a hostile or
        # broken server must fail this one volume, not unwind the whole crawl. The same bytes fail again.
        raise DecodeError(
            "response nests arrays or objects deeper than the decoder allows", volume_id=volume_id, page=page
        ) from None
    except msgspec.ValidationError as exc:
        raise DecodeError(
            f"invalid snapshot page: {exc}", field=_field_of(exc), volume_id=volume_id, page=page
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # Valid JSON that fails the schema is deterministic; broken JSON (or broken UTF-8 in a string, which msgspec
        # reports as UnicodeDecodeError) may be a garbled transfer, worth a retry.
        raise DecodeError(
            f"response is not valid JSON: {exc}", retryable=True, volume_id=volume_id, page=page
        ) from None


def decode_error_body(body: bytes) -> ErrorBody | None:
    """Parse an error answer if it has a known shape, else ``None``."""
    try:
        return _error_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # Too deep to read is an unknown shape: the status alone then says what went wrong (and if it is retried).
        return None
