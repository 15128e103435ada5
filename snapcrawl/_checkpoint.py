"""Moved to :mod:`snapcrawl.sinks.jsonl`; kept as a re-export, with the CLI's interim adapter, until the CLI
opens its sink with :func:`snapcrawl.sinks.open_sink` (then this module goes)."""

from __future__ import annotations

from ._models import Page
from .sinks import CommitListener, VolumeProgress
from .sinks.jsonl import ACCOUNT_KEY, Checkpoint, JsonLinesWriter, VolumeState

__all__ = ["ACCOUNT_KEY", "Checkpoint", "CheckpointSink", "VolumeState"]


class CheckpointSink:
    """A JSON Lines :class:`Sink` over :class:`JsonLinesWriter`, resumable with a :class:`Checkpoint`."""

    resumable = True

    def __init__(self, writer: JsonLinesWriter, checkpoint: Checkpoint | None) -> None:
        self.writer = writer
        self.checkpoint = checkpoint
        self.resumable = checkpoint is not None
        self.on_commit: CommitListener | None = None

    async def load_progress(self) -> dict[str | None, VolumeProgress]:
        if self.checkpoint is None:
            return {}
        return self.checkpoint.progress()

    async def delivered_ids(self, volume_id: str | None) -> set[str]:
        return set()

    async def write(self, page: Page) -> None:
        self.writer.write_page(page)

    async def fail(self, volume_id: str | None, error: str) -> None:
        if self.checkpoint is not None:
            self.checkpoint.record_failure(volume_id, error)

    async def flush(self) -> None:
        self.writer.flush()

    async def complete(self) -> None:
        self.writer.flush()

    async def aclose(self) -> None:
        self.writer.flush()
