"""Volume ids from a file or stdin: one a line, blank lines and ``#`` comments skipped.

A pipe or a terminal on stdin is read without a thread, as the lines arrive: one id typed by hand is crawled at
once, and a signal stops the crawl while the producer keeps stdin open (a thread blocked reading it could only
be abandoned, and would hold stdin's lock while the interpreter exits).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Final

import anyio

from .._exceptions import ConfigError

__all__ = ["read_ids", "read_ids_as_they_come"]

#: Bytes read at a time from a pipe: whatever has arrived, up to this much.
_CHUNK: Final = 65536


def _volume_id(line: str) -> str | None:
    """The id on a line, or ``None`` for a blank line or a comment."""
    volume_id = line.strip()
    return volume_id if volume_id and not volume_id.startswith("#") else None


def read_ids(lines: Iterable[str]) -> Iterator[str]:
    """The volume ids of a text stream (a regular file: reading it never waits for a producer)."""
    for line in lines:
        if (volume_id := _volume_id(line)) is not None:
            yield volume_id


async def read_ids_as_they_come(fd: int, *, name: str = "stdin") -> AsyncIterator[str]:
    """The volume ids of a pipe, FIFO or terminal (UTF-8), each as soon as its line has arrived; cancellable."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    pollable = True
    while True:
        if pollable:
            try:
                await anyio.wait_readable(fd)
            except OSError:  # /dev/null and other devices the loop cannot poll never make a reader wait
                pollable = False
        chunk = os.read(fd, _CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read volume ids from {name}: not UTF-8 text") from None
        *lines, rest = (rest + text).split("\n")
        for line in lines:
            if (volume_id := _volume_id(line)) is not None:
                yield volume_id
        if not chunk:
            if (volume_id := _volume_id(rest)) is not None:
                yield volume_id
            return
