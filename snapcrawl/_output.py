"""Output sinks: JSON Lines with the API's field names, one reused msgspec encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, Final

import msgspec

from ._models import Snapshot

__all__ = ["JsonLinesWriter", "encode_snapshots"]

_encoder: Final = msgspec.json.Encoder()


def encode_snapshots(snapshots: Sequence[Snapshot]) -> bytes:
    """Encode snapshots as JSON Lines: one object a line, each line ending in a newline."""
    return _encoder.encode_lines(snapshots)


class JsonLinesWriter:
    """Writes pages of snapshots to a binary file as JSON Lines, one ``write`` call per page."""

    __slots__ = ("_file", "lines")

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.lines = 0

    def write(self, snapshots: Sequence[Snapshot]) -> None:
        """Append ``snapshots``, one line each."""
        if snapshots:
            self._file.write(_encoder.encode_lines(snapshots))
            self.lines += len(snapshots)

    def flush(self) -> None:
        """Push buffered lines to the operating system."""
        self._file.flush()
