"""What a request to ``GET /v1/snapshots`` asks for: the API versions served and the strict query parser.

::

    Scp-Api-Version header --VERSIONS--> ApiVersion (sort needs 1.2+)
    raw query bytes --parse_query()--> Query, or the problems, each naming its parameter (-> 400)

The version table is the simulator's own, as the API reference page documents it, so that a client bug in its
table cannot hide behind a server that shares it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import unquote_plus

import msgspec

from .dataset import DEFAULT_SORT, SORT_KEYS, SortSpec

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "VERSIONS",
    "ApiVersion",
    "Query",
    "parse_query",
]

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 1000


class ApiVersion(msgspec.Struct, frozen=True):
    """One Virtual Server API version as the service root lists it."""

    id: str
    status: str
    not_before: dt.date | None
    supports_sort: bool


#: ``Scp-Api-Version`` values the simulator serves, newest first (API reference page, versions 1.0-1.3).
VERSIONS: Final[Mapping[str, ApiVersion]] = {
    f"virtualserver {info.id}": info
    for info in (
        ApiVersion("1.3", "CURRENT", None, supports_sort=True),
        ApiVersion("1.2", "SUPPORTED", dt.date(2026, 8, 31), supports_sort=True),
        ApiVersion("1.1", "DEPRECATED", dt.date(2026, 5, 31), supports_sort=False),
        ApiVersion("1.0", "DEPRECATED", dt.date(2025, 12, 31), supports_sort=False),
    )
}

_ALLOWED_PARAMS: Final = frozenset({"volume_id", "limit", "offset", "marker", "with_count", "name", "sort"})
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_OFFSET: Final = 2**31 - 1


class Query(msgspec.Struct, frozen=True):
    """A validated query of ``GET /v1/snapshots``."""

    volume_id: str | None = None
    name: str | None = None
    sort: SortSpec = DEFAULT_SORT
    marker: str | None = None
    offset: int = 0
    limit: int = DEFAULT_PAGE_SIZE
    with_count: bool = True


_DEFAULT_QUERY: Final = Query()


@functools.lru_cache(maxsize=256)
def _parse_sort(value: str) -> SortSpec:
    """Parse ``key[:dir],...``; a key without a direction sorts descending, as in OpenStack Cinder."""
    spec: list[tuple[str, bool]] = []
    for item in value.split(","):
        key, colon, direction = item.partition(":")
        if key not in SORT_KEYS:
            raise ValueError(f"sort: unknown sort key {key!r}; allowed keys are {', '.join(SORT_KEYS)}")
        if colon and direction not in ("asc", "desc"):
            raise ValueError(f"sort: unknown sort direction {direction!r} for {key!r}; use asc or desc")
        if any(key == seen for seen, _ in spec):
            raise ValueError(f"sort: sort key {key!r} given more than once")
        spec.append((key, direction != "asc"))
    if all(key != "id" for key, _ in spec):
        spec.append(("id", spec[0][1]))  # ties break by id, in the first key's direction
    return tuple(spec)


def _split_query(raw: str) -> tuple[dict[str, str], list[str]]:
    """Decode ``raw`` strictly into single-valued parameters, and the problems found."""
    params: dict[str, str] = {}
    errors: list[str] = []
    for part in raw.split("&"):
        key, equals, value = part.partition("=")
        if not part.isascii():
            errors.append(f"query parameter {part!r} is not percent-encoded")
            continue
        if "%" in part or "+" in part:
            if _BAD_ESCAPE.search(part):
                errors.append(f"malformed percent-escape in query parameter {part!r}")
                continue
            try:
                key, value = unquote_plus(key, errors="strict"), unquote_plus(value, errors="strict")
            except UnicodeDecodeError:
                errors.append(f"query parameter {part!r} is not valid UTF-8")
                continue
        if not equals:
            errors.append(f"malformed query parameter {part!r}: expected key=value")
        elif key not in _ALLOWED_PARAMS:
            errors.append(f"{key}: unknown query parameter; allowed: {', '.join(sorted(_ALLOWED_PARAMS))}")
        elif key in params:
            errors.append(f"{key}: query parameter given more than once")
        elif not value:
            errors.append(f"{key}: must not be empty")
        else:
            params[key] = value
    return params, errors


def _integer(params: dict[str, str], key: str, low: int, high: int, errors: list[str]) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if _INTEGER.fullmatch(value) is None:
        errors.append(f"{key}: must be an integer, not {value!r}")
        return None
    number = int(value)
    if not low <= number <= high:
        errors.append(f"{key}: must be between {low} and {high}, not {number}")
        return None
    return number


def parse_query(raw: str, version: ApiVersion) -> Query | list[str]:
    """The validated query, or the problems, each naming its parameter."""
    if not raw:
        return _DEFAULT_QUERY
    params, errors = _split_query(raw)
    limit = _integer(params, "limit", 1, MAX_PAGE_SIZE, errors)
    offset = _integer(params, "offset", 0, _MAX_OFFSET, errors)
    with_count = params.get("with_count", "true")
    if with_count not in ("true", "false"):
        errors.append(f"with_count: must be true or false, not {with_count!r}")
    sort = DEFAULT_SORT
    if (sort_value := params.get("sort")) is not None:
        if not version.supports_sort:
            errors.append(f"sort: not supported by API version {version.id}; it needs 1.2 or later")
        else:
            try:
                sort = _parse_sort(sort_value)
            except ValueError as exc:
                errors.append(str(exc))
    if errors:
        return errors
    return Query(
        volume_id=params.get("volume_id"),
        name=params.get("name"),
        sort=sort,
        marker=params.get("marker"),
        offset=offset or 0,
        limit=limit or DEFAULT_PAGE_SIZE,
        with_count=with_count == "true",
    )
