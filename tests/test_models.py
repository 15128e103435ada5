"""Decoding snapshot pages: edge cases, deep nesting, and fuzzing from valid pages mutated one field at a time."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from snapcrawl import DecodeError, Snapshot
from snapcrawl._models import SnapshotPage, decode_error_body, decode_page
from snapcrawl.sinks.jsonl import encode_snapshots

BASE = {"id": "s1", "volume_id": "v1", "size": 10, "created_at": "2025-07-22T09:00:00Z"}


def _page(**fields: Any) -> bytes:
    return json.dumps({"count": 1, "snapshots": [BASE | fields]}).encode()


def test_reference_example_decodes() -> None:
    """The reference page's example response decodes with every field."""
    body = (
        b'{"count": 100, "snapshots": [{"created_at": "2025-07-22T09:00:00Z", "description": "description",'
        b' "id": "cceed636", "metadata": "Metadata", "name": "snapshot-1", "size": 104, "status": "available",'
        b' "updated_at": "2025-07-26T12:00:00Z", "user_id": "570907805e", "volume_id": "3f500f00"}]}'
    )
    page = decode_page(body)
    snap = page.snapshots[0]
    assert page.count == 100
    assert snap.created_at == dt.datetime(2025, 7, 22, 9, tzinfo=dt.UTC)
    assert (snap.metadata, snap.name, snap.size, snap.status) == ("Metadata", "snapshot-1", 104, "available")


def test_naive_timestamps_are_utc() -> None:
    """A naive timestamp is read as UTC and comes out timezone-aware."""
    snap = decode_page(_page(created_at="2006-01-02T15:04:05", updated_at="2006-01-03T00:00:00")).snapshots[0]
    assert snap.created_at == dt.datetime(2006, 1, 2, 15, 4, 5, tzinfo=dt.UTC)
    assert snap.updated_at is not None and snap.updated_at.tzinfo is dt.UTC


def test_offset_timestamps_keep_their_instant() -> None:
    """A timestamp with an offset keeps its instant."""
    snap = decode_page(_page(created_at="2025-07-22T18:00:00+09:00")).snapshots[0]
    assert snap.created_at == dt.datetime(2025, 7, 22, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize("metadata", [{"k": "v", "n": [1, 2]}, "plain", None])
def test_metadata_shapes(metadata: object) -> None:
    """Metadata may be an object, a string or null."""
    assert decode_page(_page(metadata=metadata)).snapshots[0].metadata == metadata


def test_unknown_fields_ignored_and_count_nullable() -> None:
    """Unknown fields are ignored and a null count is accepted."""
    body = json.dumps({"count": None, "extra": 1, "snapshots": [BASE | {"new_field": {"x": 1}}]}).encode()
    page = decode_page(body)
    assert page.count is None and page.snapshots[0].id == "s1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_page(size="10"), "snapshots[0].size"),
        (json.dumps({"snapshots": [{k: v for k, v in BASE.items() if k != "id"}]}).encode(), "snapshots[0].id"),
        (_page(created_at="yesterday"), "snapshots[0].created_at"),
        (b'{"count": 3}', "snapshots"),
    ],
)
def test_bad_fields_are_named(body: bytes, field: str) -> None:
    """A wrong type or a missing field raises DecodeError naming the field, the volume and the page."""
    with pytest.raises(DecodeError) as info:
        decode_page(body, volume_id="vol-9", page=4)
    error = info.value
    assert (error.field, error.volume_id, error.page) == (field, "vol-9", 4)
    assert "vol-9" in str(error) and "page 4" in str(error) and not error.retryable


def test_broken_json_is_retryable() -> None:
    """Malformed JSON is a DecodeError that a retry may cure."""
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decode_page(b'{"snapshots": [', volume_id="v", page=1)
    assert info.value.retryable


def test_output_round_trip() -> None:
    """JSON Lines output uses the API's field names and decodes back to equal snapshots."""
    snap = decode_page(_page(created_at="2006-01-02T15:04:05", name="스냅샷 ü")).snapshots[0]
    line = encode_snapshots([snap])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = json.loads(line)
    assert data["created_at"] == "2006-01-02T15:04:05Z" and data["name"] == "스냅샷 ü"
    assert msgspec.json.decode(line, type=Snapshot) == snap


def test_error_bodies() -> None:
    """Both the API's and the gateway's error shapes are understood."""
    api = decode_error_body(b'{"errors":[{"code":"ValidationError","detail":["a","b"],"request_id":"req-1"}]}')
    assert api is not None and (api.detail, api.first_request_id) == ("a; b", "req-1")
    gateway = decode_error_body(
        b'{"timestamp":"t","path":"/v1/snapshots","status":404,"error":"Not Found","requestId":"r"}'
    )
    assert gateway is not None and (gateway.detail, gateway.first_request_id) == ("Not Found", "r")
    assert decode_error_body(b"<html>") is None


# -- deep nesting -----------------------------------------------------------------------------------------------

DEEP = 100_000


def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def test_broken_utf8_is_a_retryable_decode_error() -> None:
    """A byte that is not UTF-8 inside a string (a garbled transfer) is a retryable DecodeError, not a crash."""
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decode_page(b'{"snapshots": [{"id": "\x80"}]}', volume_id="v", page=1)
    assert info.value.retryable
    assert decode_error_body(b'{"errors": [{"detail": "\xff"}]}') is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"snapshots": [], "unknown": ' + _nested(DEEP) + b"}", id="unknown-field-lists"),
        pytest.param(b'{"snapshots": [], "unknown": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", id="objects"),
        pytest.param(
            b'{"snapshots": [{"id": "s", "volume_id": "v", "size": 1, "created_at": "2025-07-22T09:00:00Z",'
            b' "metadata": {"k": ' + _nested(DEEP) + b"}}]}",
            id="metadata",
        ),
    ],
)
def test_deep_nesting_is_a_decode_error(body: bytes) -> None:
    """A field nested 100,000 deep, even one the model ignores, is a DecodeError naming volume and page."""
    with pytest.raises(DecodeError, match="deeper") as info:
        decode_page(body, volume_id="vol-deep", page=3)
    assert (info.value.volume_id, info.value.page, info.value.retryable) == ("vol-deep", 3, False)


def test_deeply_nested_error_body_is_an_unknown_shape() -> None:
    """An error body nested 100,000 deep is not understood (None), so the status alone describes the answer."""
    assert decode_error_body(b'{"error": "Not Found", "trace": ' + _nested(DEEP) + b"}") is None
    assert decode_error_body(b'{"errors": [{"detail": "x", "meta": ' + _nested(DEEP) + b"}]}") is None


def test_moderate_nesting_in_metadata_decodes() -> None:
    """Nesting a real server might send (50 levels in metadata or an unknown field) still decodes."""
    nested: Any = "leaf"
    for _ in range(50):
        nested = [nested]
    page = decode_page(_page(metadata={"tree": nested}, future_field=nested))
    assert page.snapshots[0].metadata == {"tree": nested}


# -- fuzzing: valid pages, then one field mutated -----------------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or Infinity
json_scalars = st.none() | st.booleans() | st.integers() | FINITE | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
timestamps = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1), timezones=st.one_of(st.none(), offsets)
).map(lambda d: d.isoformat())
optional_text = st.none() | st.text()
#: For each field: values the API may send (must decode) and values it may not (must be a DecodeError naming it).
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "id": (st.text(), st.none() | st.integers() | st.booleans() | st.lists(st.text(), max_size=2)),
    "volume_id": (
        st.text(),
        st.none() | st.integers() | FINITE | st.dictionaries(st.text(), st.text()),
    ),
    "size": (
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.none()
        | st.booleans()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.lists(st.integers()),
    ),
    "created_at": (
        timestamps,
        st.none() | st.integers() | st.just("yesterday") | st.just("2025-07-22") | st.booleans(),
    ),
    "updated_at": (st.none() | timestamps, st.integers() | st.just("not a date") | st.lists(timestamps, min_size=1)),
    "status": (optional_text, st.integers() | st.booleans() | st.lists(st.text(), max_size=2)),
    "name": (optional_text, st.integers() | st.booleans() | st.dictionaries(st.text(), st.text(), max_size=2)),
    "description": (optional_text, st.integers() | FINITE | st.lists(st.text(), max_size=2)),
    "metadata": (
        st.none() | st.text() | st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        st.integers() | st.booleans() | st.lists(json_values, max_size=3),
    ),
    "user_id": (optional_text, st.integers() | st.booleans() | st.lists(st.text(), max_size=2)),
}
REQUIRED = ("id", "volume_id", "size", "created_at")
DELETE = object()  # a mutation that removes the field


@st.composite
def valid_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A snapshot the API may send: the required fields, some optional ones, perhaps a field from the future."""
    fields = {name: draw(FIELDS[name][0]) for name in REQUIRED}
    for name in FIELDS.keys() - REQUIRED:
        if draw(st.booleans()):
            fields[name] = draw(FIELDS[name][0])
    if draw(st.booleans()):
        fields[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in FIELDS))] = draw(json_values)
    return fields


valid_pages = st.fixed_dictionaries(
    {"snapshots": st.lists(valid_snapshots(), min_size=1, max_size=4)},
    optional={"count": st.none() | st.integers(min_value=0, max_value=10**9), "next_page_token": json_values},
)


def _expected(value: Any) -> Any:
    """What a JSON value of a snapshot decodes to (timestamps become aware datetimes)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = dt.datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return value


def _check_decoded(document: dict[str, Any], page: SnapshotPage) -> None:
    """The decoded page holds exactly the document's values."""
    assert page.count == document.get("count")
    assert len(page.snapshots) == len(document["snapshots"])
    for raw, snap in zip(document["snapshots"], page.snapshots, strict=True):
        for name in FIELDS:
            value = getattr(snap, name)
            if name in ("created_at", "updated_at"):
                assert value == _expected(raw.get(name)) and (value is None or value.tzinfo is not None)
            else:
                assert value == raw.get(name)


@given(valid_pages)
@settings(max_examples=200)
def test_fuzz_valid_pages_decode(document: dict[str, Any]) -> None:
    """Every page the API may send decodes, value for value, with aware timestamps."""
    _check_decoded(document, decode_page(json.dumps(document).encode(), volume_id="v", page=1))


@st.composite
def mutated_pages(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool]:
    """A valid page with one field of one snapshot (or the page itself) changed: (page, field path, still valid)."""
    document: dict[str, Any] = draw(valid_pages)
    target: dict[str, Any]
    value: Any
    where = draw(st.sampled_from(["snapshot", "snapshot", "snapshot", "page"]))
    if where == "page":
        name, valid, value = draw(
            st.sampled_from(
                [
                    ("count", True, st.none() | st.integers(min_value=0)),
                    ("count", False, st.text() | FINITE | st.lists(st.integers(), max_size=2)),
                    ("snapshots", False, st.none() | st.text() | st.integers() | st.dictionaries(st.text(), st.text())),
                    ("snapshots", False, st.just(DELETE)),
                ]
            ).flatmap(lambda spec: st.tuples(st.just(spec[0]), st.just(spec[1]), spec[2]))
        )
        target, path = document, name
    else:
        index = draw(st.integers(min_value=0, max_value=len(document["snapshots"]) - 1))
        name = draw(st.sampled_from(sorted(FIELDS)))
        valid = draw(st.booleans())
        good, bad = FIELDS[name]
        value = draw(good if valid else (st.just(DELETE) | bad) if name in REQUIRED else bad)
        target, path = document["snapshots"][index], f"snapshots[{index}].{name}"
    if value is DELETE:
        target.pop(name, None)
    else:
        target[name] = value
    return document, path, valid


@given(mutated_pages())
@settings(max_examples=400)
def test_fuzz_one_field_mutated(case: tuple[dict[str, Any], str, bool]) -> None:
    """A valid mutation decodes to its values; an invalid one is a DecodeError naming exactly that field."""
    document, path, valid = case
    note(f"mutated {path}, valid={valid}")
    body = json.dumps(document).encode()
    if valid:
        _check_decoded(document, decode_page(body, volume_id="v", page=2))
        return
    with pytest.raises(DecodeError) as info:
        decode_page(body, volume_id="v", page=2)
    assert (info.value.field, info.value.volume_id, info.value.page, info.value.retryable) == (path, "v", 2, False)


@st.composite
def damaged_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Bytes of a valid page, then perhaps damaged: cut short, a byte changed, bytes inserted, or deeply nested."""
    body = json.dumps(draw(valid_pages)).encode()
    damage = draw(st.sampled_from(["none", "cut", "flip", "insert", "nest"]))
    at = draw(st.integers(min_value=0, max_value=len(body) - 1))
    if damage == "cut":
        body = body[:at]
    elif damage == "flip":
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    elif damage == "insert":
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif damage == "nest":  # an unknown field nested deep enough to exhaust any recursion limit
        body = body[:-1] + b', "deep": ' + _nested(draw(st.integers(5_000, 50_000))) + b"}"
    return body, damage


@given(damaged_bodies())
@settings(max_examples=400)
def test_fuzz_damaged_bytes(case: tuple[bytes, str]) -> None:
    """Undamaged bodies decode with their snapshots; damaged ones decode or raise DecodeError, never anything else."""
    body, damage = case
    error: DecodeError | None = None
    try:
        page = decode_page(body, volume_id="v", page=1)
    except DecodeError as exc:  # which outcome depends on the damage
        error = exc
    else:
        assert page.snapshots and all(snap.created_at.tzinfo is not None for snap in page.snapshots)
    if error is not None:
        assert damage != "none" and error.volume_id == "v"
        assert damage != "nest" or "deeper" in str(error)
    error_body = decode_error_body(body)  # never raises either
    assert error_body is None or isinstance(error_body.errors, list)
