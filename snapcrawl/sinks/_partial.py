"""An output written beside its destination and moved into place only when the crawl ran to its end.

The previous file stays whole until the new one is: a crawl that stops early (bad credentials, Ctrl-C, a
crash) leaves it as it was, and keeps what it wrote in ``<name>.partial`` next to it (removed when empty). Both
the destination and the partial file are locked while the crawl runs, so a second writer is refused.
A destination that is not a regular file (``/dev/stdout``, a named pipe) is written directly: it cannot be
replaced, and it keeps no previous content to protect.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Final

from .._exceptions import SinkError
from ._lock import lock_existing, lock_file

__all__ = ["PARTIAL_SUFFIX", "PartialFile"]

#: Appended to the destination's name for the file a crawl writes before it is moved into place.
PARTIAL_SUFFIX: Final = ".partial"


class PartialFile:
    """Writes ``destination`` through ``<destination>.partial``; :meth:`replace` moves it into place.

    ``destination`` may be a symbolic link: the file it points to is the one replaced. ``name`` is how errors
    name the output. Not thread-safe; call :meth:`open`, then :meth:`replace` (or not), then :meth:`close`.
    """

    def __init__(self, destination: str | os.PathLike[str], *, name: str) -> None:
        self.destination = Path(os.path.realpath(destination))
        self.path = self.destination.with_name(self.destination.name + PARTIAL_SUFFIX)
        self.name = name
        #: Whether the destination is written directly (not a regular file): nothing to move into place.
        self.direct = False
        self.replaced = False
        #: The partial output kept beside the destination by :meth:`close` (``None``: none was kept).
        self.kept: Path | None = None
        self._file: BinaryIO | None = None
        self._locks: list[int] = []

    def open(self) -> BinaryIO:
        """Lock the destination (if it exists) and the partial file, and return the partial file, emptied."""
        try:
            mode = self.destination.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise SinkError(f"cannot write: {exc.strerror}", destination=self.name) from None
        if mode is not None and not stat.S_ISREG(mode):
            self.direct = True
            try:
                self._file = open(self.destination, "wb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise SinkError(f"cannot write: {exc.strerror}", destination=self.name) from None
            return self._file
        try:
            if (held := lock_existing(self.destination, destination=self.name)) is not None:
                self._locks.append(held)
            fd = lock_file(self.path, destination=f"{self.name} (its partial file {self.path})")
            self._locks.append(fd)
            os.ftruncate(fd, 0)  # only once locked: never empty another run's partial output
            self._file = open(os.dup(fd), "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            self._release()
            raise SinkError(f"cannot write: {exc.strerror}", destination=self.name) from None
        except BaseException:
            self._release()
            raise
        return self._file

    def replace(self) -> None:
        """Make the partial file durable and move it over the destination, atomically."""
        file = self._file
        if file is None or self.direct or self.replaced:
            return
        file.flush()
        os.fsync(file.fileno())
        if len(self._locks) == 1 and (held := lock_existing(self.destination, destination=self.name)) is not None:
            self._locks.append(held)  # the destination appeared since: another run may not be writing it
        os.replace(self.path, self.destination)
        self.replaced = True

    def close(self) -> Path | None:
        """Close and unlock; return (and keep in :attr:`kept`) the partial file if it was not moved into place and
        is not empty. A failure to write what was buffered (a full disk) is raised, once the locks are released."""
        file, self._file = self._file, None
        try:
            if file is not None:
                file.close()
        finally:
            if file is not None and not self.direct and not self.replaced:
                with contextlib.suppress(OSError):
                    if self.path.stat().st_size == 0:
                        self.path.unlink()
                    else:
                        self.kept = self.path
            self._release()
        return self.kept

    def _release(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()
