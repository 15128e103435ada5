"""Output sinks: JSON Lines with the API's field names, one reused msgspec encoder."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec

from ._models import Snapshot

if TYPE_CHECKING:
    from ._checkpoint import Checkpoint
    from ._models import Page

__all__ = ["JsonLinesWriter", "encode_snapshots"]

_encoder: Final = msgspec.json.Encoder()


def encode_snapshots(snapshots: Sequence[Snapshot]) -> bytes:
    """Encode snapshots as JSON Lines: one object a line, each line ending in a newline."""
    return _encoder.encode_lines(snapshots)


class JsonLinesWriter:
    """Writes pages of snapshots to a binary file as JSON Lines, one ``write`` call per page.

    With a :class:`Checkpoint`, each page is recorded there, and the checkpoint is committed (after the file
    is flushed) at most every ``commit_interval`` seconds and on :meth:`flush`; the output then resumes
    exactly where the checkpoint says. ``offset`` is the file position the writer started at.
    """

    __slots__ = ("_checkpoint", "_commit_interval", "_file", "_last_commit", "lines", "offset")

    def __init__(
        self,
        file: BinaryIO,
        *,
        checkpoint: Checkpoint | None = None,
        offset: int = 0,
        commit_interval: float = 0.5,
    ) -> None:
        self._file = file
        self._checkpoint = checkpoint
        self._commit_interval = commit_interval
        self._last_commit = time.monotonic()
        self.offset = offset
        self.lines = 0

    def write(self, snapshots: Sequence[Snapshot]) -> None:
        """Append ``snapshots``, one line each."""
        if snapshots:
            data = _encoder.encode_lines(snapshots)
            self._file.write(data)
            self.offset += len(data)
            self.lines += len(snapshots)

    def write_page(self, page: Page) -> None:
        """Append a page's snapshots and, with a checkpoint, record the page."""
        if page.snapshots:
            data = _encoder.encode_lines(page.snapshots)
            self._file.write(data)
            self.offset += len(data)
            self.lines += len(page.snapshots)
        if self._checkpoint is not None:
            self._checkpoint.record_page(page.volume_id, page.marker, last=page.last)
            if time.monotonic() - self._last_commit >= self._commit_interval:
                self.flush()

    def flush(self) -> None:
        """Push buffered lines to the operating system, then commit the checkpoint that covers them."""
        self._file.flush()
        if self._checkpoint is not None:
            self._checkpoint.commit(self.offset)
            self._last_commit = time.monotonic()
