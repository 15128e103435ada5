"""An in-memory SCP listing that changes while it is listed: the consistency contract's test bench.

It answers the queries :class:`PageCursor` builds (``limit``, ``marker``, ``offset``) as the API does: items in a
fixed order, a marker's position looked up in the *current* order, a 400 when the marker is gone, and an
optional cap on ``limit``. After every page it serves, ``churn`` may delete and create snapshots.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from urllib.parse import parse_qs

import anyio
import anyio.lowlevel

from snapcrawl import BadRequestError, Snapshot
from snapcrawl._models import SnapshotPage
from snapcrawl._stats import CrawlStats

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


class LivingListing:
    """One listing (a volume, or the account): ``order`` is the server's order; ``churn`` runs after each page."""

    def __init__(
        self,
        size: int,
        *,
        cap: int | None = None,
        churn: Callable[[LivingListing, list[str]], None] | None = None,
        seed: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        self._next = 0
        self.order: list[str] = [self.new_id() for _ in range(size)]
        self.initial = set(self.order)
        self.ever = set(self.order)
        self.deleted: set[str] = set()
        self.cap = cap
        self.churn = churn
        self.requests = 0
        self.rejected_markers = 0
        self.markers: list[str | None] = []  # the marker of each request, in order (None: from the start)

    def new_id(self) -> str:
        self._next += 1
        return f"s{self._next:06d}"

    def throughout(self) -> set[str]:
        """Ids that existed from the start to now."""
        return self.initial - self.deleted

    def delete(self, snapshot_id: str) -> None:
        if snapshot_id in self.order:
            self.order.remove(snapshot_id)
            self.deleted.add(snapshot_id)

    def create(self, position: int) -> None:
        snapshot_id = self.new_id()
        self.order.insert(max(0, min(position, len(self.order))), snapshot_id)
        self.ever.add(snapshot_id)

    async def fetch(self, query: str, *, volume_id: str | None, page: int, stats: CrawlStats) -> SnapshotPage:
        """Answer one page, then let the data change."""
        await anyio.lowlevel.checkpoint()  # let other walks interleave, as real requests do
        self.requests += 1
        stats.requests += 1
        params = {key: values[0] for key, values in parse_qs(query, keep_blank_values=True).items()}
        limit = int(params["limit"])
        if self.cap is not None:
            limit = min(limit, self.cap)
        start = int(params.get("offset", 0))
        self.markers.append(marker := params.get("marker"))
        if marker is not None:
            if marker not in self.order:
                self.rejected_markers += 1
                raise BadRequestError(
                    f"marker: snapshot {marker!r} not found", status=400, detail="marker not found", page=page
                )
            start = self.order.index(marker) + 1
        ids = self.order[start : start + limit]
        answer = SnapshotPage(
            snapshots=[Snapshot(id=i, volume_id=volume_id or "v", size=1, created_at=NOW) for i in ids],
            count=len(self.order),
        )
        if self.churn is not None:
            self.churn(self, ids)
        stats.pages += 1
        return answer


def hostile_churn(rate: float) -> Callable[[LivingListing, list[str]], None]:
    """After a page: sometimes delete its last id (the next marker), ids already passed, ids ahead, and create."""

    def churn(listing: LivingListing, served: list[str]) -> None:
        rng = listing.rng
        if not served or rng.random() > rate:
            return
        if rng.random() < 0.5:
            listing.delete(served[-1])  # exactly the next marker
        for _ in range(rng.randint(0, 3)):
            if listing.order:
                listing.delete(rng.choice(listing.order))  # anywhere: passed or ahead
        for _ in range(rng.randint(0, 3)):
            listing.create(rng.randint(0, len(listing.order)))

    return churn
