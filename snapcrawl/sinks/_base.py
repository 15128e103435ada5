"""The seam between a crawl run and where its snapshots go, resume included.

The run calls ``await load_progress()`` once before the first request, then ``await write(page)`` for every
page (pages of one volume in order; volumes interleave), ``await fail(volume_id, error)`` for a volume it gave
up on, and ``await flush()`` / ``await aclose()`` at the end. A slow destination makes ``write`` wait: that is
the crawl's backpressure. ``page.last`` means the volume's listing completed in this crawl, so a pruning sink
may delete that volume's rows this crawl did not see. ``volume_id`` ``None`` is the account-wide listing.

A resumable sink commits pages together with the progress that covers them (the marker reached, and the
volume done or not), so a crawl killed at any moment and run again with the same destination writes every
snapshot once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal, Protocol

from .._models import Page

__all__ = ["Sink", "VolumeProgress"]


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeProgress:
    """What a resumable sink has committed of one volume.

    ``markers`` are the ids of the last committed page, newest first: the walk resumes after ``markers[0]`` and,
    should that snapshot have been deleted since, after the next one that still exists.
    """

    status: Literal["done", "partial", "failed"]
    markers: tuple[str, ...] = ()
    pages: int = 0


class Sink(Protocol):
    """Where one crawl's pages go."""

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """What earlier runs into this destination committed (empty for a non-resumable sink or a new one)."""
        ...

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        """The ids of ``volume_id`` already committed; read only when a resumed walk must start over."""
        ...

    async def write(self, page: Page) -> None:
        """Take one page (an empty last page too); may buffer it until the next commit, and may wait."""
        ...

    async def fail(self, volume_id: str | None, error: str) -> None:
        """Note that the crawl gave up on a volume: it is never pruned, and is retried when resumed."""
        ...

    async def flush(self) -> None:
        """Commit everything taken so far."""
        ...

    async def aclose(self) -> None:
        """Flush and release the destination."""
        ...
