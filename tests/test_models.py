"""Decoding snapshot pages: edge cases, and fuzzing that only DecodeError ever escapes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snapcrawl import DecodeError, Snapshot
from snapcrawl._models import decode_error_body, decode_page
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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
snapshot_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.text(),
        "volume_id": json_values | st.text(),
        "size": json_values | st.integers(),
        "created_at": json_values | st.datetimes().map(lambda d: d.isoformat()),
        "metadata": json_values,
        "name": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {}, optional={"count": json_values, "snapshots": st.lists(snapshot_like, max_size=3) | json_values}
    )
)
def test_fuzz_json_documents(document: dict[str, Any]) -> None:
    """Any JSON document either decodes to a page or raises DecodeError, never anything else."""
    body = json.dumps(document).encode()
    try:
        page = decode_page(body, volume_id="v", page=1)
    except DecodeError as error:
        assert error.volume_id == "v"  # noqa: PT017 - the fuzzed outcome is either branch
    else:
        assert all(snap.created_at.tzinfo is not None for snap in page.snapshots)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    """Arbitrary bytes never raise anything but DecodeError."""
    with contextlib.suppress(DecodeError):
        decode_page(body)
    error_body = decode_error_body(body)  # must not raise either
    assert error_body is None or isinstance(error_body.errors, list)
