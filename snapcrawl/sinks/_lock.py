"""One run at a time per file: an advisory ``flock`` held for the sink's life, released by the kernel on a kill."""

from __future__ import annotations

import fcntl
import os

from .._exceptions import BusyError, SinkError

__all__ = ["lock_existing", "lock_file"]


def lock_file(path: str | os.PathLike[str], *, destination: str) -> int:
    """Open (creating if needed) and lock ``path``; return the descriptor to close. A second run fails at once.

    ``flock`` locks are separate from the POSIX record locks SQLite takes, so locking a database file itself
    does not disturb SQLite, and readers of the database are not blocked.
    """
    fd = _lock(path, destination=destination, create=True)
    assert fd is not None  # noqa: S101 - created
    return fd


def lock_existing(path: str | os.PathLike[str], *, destination: str) -> int | None:
    """Lock ``path`` like :func:`lock_file` if it exists (``None`` if not): locking never leaves an empty file."""
    return _lock(path, destination=destination, create=False)


def _lock(path: str | os.PathLike[str], *, destination: str, create: bool) -> int | None:
    """Open and lock ``path``; a file locked by another run is a :class:`BusyError` naming it."""
    try:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        if not create:
            return None
        raise SinkError("cannot write: no such directory", destination=destination) from None
    except OSError as exc:
        raise SinkError(f"cannot {'write' if create else 'open'}: {exc.strerror}", destination=destination) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BusyError(
            "in use by another snapcrawl run; wait for it to end (or stop it) before starting another",
            destination=destination,
        ) from None
    return fd
