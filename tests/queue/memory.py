"""An in-memory sink for queue tests: pages count as committed only once flushed, and it says so."""

from __future__ import annotations

from collections.abc import Mapping

from snapcrawl._models import Page
from snapcrawl.sinks import CommitListener, VolumeProgress


class MemorySink:
    """A sink that keeps pages in memory and makes them 'committed' only on flush, then says so."""

    resumable = True

    def __init__(self, progress: Mapping[str | None, VolumeProgress] | None = None) -> None:
        self.on_commit: CommitListener | None = None
        self.progress = dict(progress or {})
        self.buffered: list[Page] = []
        self.committed: list[Page] = []
        self.failed: dict[str | None, str] = {}
        self.flushes = 0

    async def load_progress(self) -> Mapping[str | None, VolumeProgress]:
        return self.progress

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return set()

    async def write(self, page: Page) -> None:
        self.buffered.append(page)

    async def fail(self, volume_id: str | None, error: str) -> None:
        self.failed[volume_id] = error

    async def flush(self) -> None:
        self.flushes += 1
        pages, self.buffered = self.buffered, []
        self.committed += pages
        if self.on_commit is not None:
            await self.on_commit([page.volume_id for page in pages if page.last])

    async def complete(self) -> None:
        await self.flush()

    async def aclose(self) -> None:
        await self.flush()

    def committed_volumes(self) -> set[str | None]:
        return {page.volume_id for page in self.committed if page.last}
