"""Which 400s are about the user's own options (the crawl stops naming one) and which about one volume or page."""

from __future__ import annotations

import pytest

from snapcrawl import BadRequestError
from snapcrawl._errors import query_option


def _rejected(detail: str) -> BadRequestError:
    return BadRequestError(f"request rejected (HTTP 400: {detail})", status=400, detail=detail)


@pytest.mark.parametrize(
    ("detail", "params", "option"),
    [
        ("sort: unknown key 'sizee'", {"sort": "sizee:asc", "limit": "100"}, "--sort"),
        ("Invalid value for 'name'", {"name": "db-*", "limit": "100"}, "--name"),
        ("limit: must be at most 100", {"limit": "1000"}, "--page-size"),
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
