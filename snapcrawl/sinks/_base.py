"""The seam between a crawl run and where its snapshots go, resume included.

The run calls ``await load_progress()`` once before the first request, then ``await write(page)`` for every
page (pages of one volume in order; volumes interleave), ``await fail(volume_id, error)`` for a volume it gave
up on, ``await complete()`` if the crawl ran to its end (not when it was cancelled, interrupted or stopped by
an error), and ``await aclose()`` at the end in every case. A slow destination makes ``write`` wait: that is
the crawl's backpressure (a sink buffers a bounded number of rows). ``page.last`` means the volume's listing
completed in this crawl, so a pruning sink may delete that volume's rows this crawl did not see. ``volume_id``
``None`` is the account-wide listing.

A resumable sink commits pages together with the progress that covers them (the markers reached, and the
volume done or not), so a crawl killed at any moment and run again with the same destination writes every
snapshot once.

Commit notification: ``on_commit``, when set, is awaited after each durable commit with the volume ids whose
listing completed (``page.last``) or failed in that commit, each once, in no particular order. Until it has
been called for a volume, nothing about that volume's outcome is durable: a distributed worker acknowledges a
queue message only then. It runs in the task that triggered the commit (a ``write``, ``fail``, ``flush``,
``complete`` or ``aclose``); an exception it raises propagates from there, after the commit. The sinks here
commit when a ``write`` or ``fail`` finds a batch due (5,000 rows, or 0.5 s since the last commit) and on
``flush``: a caller that goes idle with pages taken (a worker waiting for its next message) calls ``flush``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, Protocol, TypeAlias

from .._models import Page

__all__ = ["CommitListener", "Sink", "VolumeProgress"]

#: Awaited after each durable commit with the volumes completed or failed in it (``None``: the account).
CommitListener: TypeAlias = Callable[[Sequence[str | None]], Awaitable[None]]


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

    #: Awaited after each durable commit (see the module docstring); ``None`` by default.
    on_commit: CommitListener | None
    #: Whether it keeps progress to resume from. A resumable sink needs each listing's pages in order, ending with
    #: the ``last`` one, so the account-wide listing is then walked by marker rather than fetched by offset.
    resumable: bool

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        """What earlier runs of this crawl committed (empty for a non-resumable sink, a new or a finished crawl)."""
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

    async def complete(self) -> None:
        """Commit, and mark the crawl finished: the next run into a database destination is a new crawl.

        Call it only when the run reached its end (every volume walked to its last page, or failed). A JSON Lines
        state file keeps its progress (the file holds one crawl; running it again skips what is done).
        """
        ...

    async def aclose(self) -> None:
        """Flush and release the destination."""
        ...
