"""A server whose marker goes round in circles: the account listing ends, and never delivers a snapshot twice."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from snapcrawl import Crawler, Credentials, PaginationError
from snapcrawl._models import Page
from snapcrawl.transport import Response

from .fakes import FakeClock, FakeTransport, ok, page_body, query_of, snapshot

CREDENTIALS = Credentials(access_key="AK-test", secret_key="SK-test")
TOTAL, PAGE = 50, 10
ITEMS = [snapshot(n, f"vol-{n % 7}") for n in range(TOTAL)]
IDS = [item["id"] for item in ITEMS]


def _cycling(url: str, headers: dict[str, str]) -> Response:
    """Offsets ignored (every offset page is the first), and past the second page a marker comes round to the first."""
    del headers
    query = query_of(url)
    start = 0
    if "marker" in query:
        start = IDS.index(query["marker"]) + 1
        if start >= 2 * PAGE:
            start %= 2 * PAGE
    return ok(page_body(ITEMS[start : start + PAGE], count=TOTAL))


@pytest.mark.parametrize("resumable", [False, True])
async def test_account_listing_of_a_cycling_server_ends_without_duplicates(resumable: bool) -> None:
    """The fan-out's seams and the resumable walk by marker both stop the cycle with a PaginationError."""
    clock = FakeClock()
    transport = FakeTransport(_cycling)
    pages: list[Page] = []

    class Sink:
        on_commit = None

        def __init__(self) -> None:
            self.resumable = resumable

        async def load_progress(self) -> dict[str | None, object]:
            return {}

        async def delivered_ids(self, volume_id: str | None) -> set[str]:
            return set()

        async def write(self, page: Page) -> None:
            pages.append(page)

        async def fail(self, volume_id: str | None, error: str) -> None:
            pass

        async def flush(self) -> None:
            pass

        async def complete(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    crawler = Crawler(
        endpoint="http://127.0.0.1:9",
        credentials=CREDENTIALS,
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        page_size=PAGE,
    )
    async with crawler:
        with anyio.fail_after(20):
            result = await crawler.crawl_into(None, Sink())  # type: ignore[arg-type]
    delivered = Counter(s.id for page in pages for s in page.snapshots)
    assert set(delivered.values()) == {1}
    assert set(delivered) == set(IDS[: 2 * PAGE])
    [failure] = result.failures
    assert failure.volume_id is None and isinstance(failure.error, PaginationError)
    assert "cursor loops" in str(failure.error)
    assert len(transport.requests) < 100  # a few pages per seam, not an endless loop
