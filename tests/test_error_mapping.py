"""Error mapping: each status's error class, and which 400s are about the user's own options."""

from __future__ import annotations

import pytest

from snapcrawl import ApiError, BadRequestError, ServerError, ThrottledError
from snapcrawl._errors import error_for_response, query_option
from snapcrawl._transport import Response


def _rejected(detail: str) -> BadRequestError:
    return BadRequestError(f"request rejected (HTTP 400: {detail})", status=400, detail=detail)


@pytest.mark.parametrize(
    ("detail", "params", "option"),
    [
        ("sort: unknown key 'sizee'", {"sort": "sizee:asc", "limit": "100"}, "sort"),
        ("Invalid value for 'name'", {"name": "db-*", "limit": "100"}, "name"),
        ("limit: must be at most 100", {"limit": "1000"}, "page_size"),
        # The same words about a parameter this request did not send are not about an option the user chose.
        ("sort: unknown key 'sizee'", {"limit": "100", "volume_id": "v1"}, None),
        ("name: too long", {"limit": "100"}, None),
        ("marker: snapshot 's1' not found", {"limit": "100", "marker": "s1"}, None),
        ("volume_id: not a UUID", {"limit": "100", "volume_id": "v1"}, None),
    ],
)
def test_a_400_names_an_option_only_if_the_request_carried_it(
    detail: str, params: dict[str, str], option: str | None
) -> None:
    assert query_option(_rejected(detail), params) == option


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [(500, ServerError, True), (502, ServerError, True), (503, ServerError, True), (429, ThrottledError, True),
     (418, ApiError, False)],
)  # fmt: skip
def test_each_status_maps_to_its_error(status: int, cls: type[ApiError], retryable: bool) -> None:
    """Every 5xx, 500 included, is a server error worth retrying; an unknown 4xx is not retried."""
    response = Response(status=status, body=b"")
    error = error_for_response(response, volume_id="v1", page=2, now=0.0)
    assert type(error) is cls
    assert error.retryable is retryable
    assert (error.status, error.volume_id, error.page) == (status, "v1", 2)
