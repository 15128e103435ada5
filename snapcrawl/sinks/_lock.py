"""One run at a time per file: an advisory ``flock`` held for the sink's life, released by the kernel on a kill."""

from __future__ import annotations

import fcntl
import os

from .._exceptions import SinkError

__all__ = ["lock_file"]


def lock_file(path: str | os.PathLike[str], *, destination: str) -> int:
    """Open (creating if needed) and lock ``path``; return the descriptor to close. A second run fails at once.

    ``flock`` locks are separate from the POSIX record locks SQLite takes, so locking a database file itself
    does not disturb SQLite, and readers of the database are not blocked.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise SinkError(f"cannot open: {exc.strerror}", destination=destination) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SinkError(
            "in use by another snapcrawl run; wait for it to end (or stop it) before starting another",
            destination=destination,
        ) from None
    return fd
