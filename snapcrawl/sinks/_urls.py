"""Destination URLs: the file of a SQLite URL, and a PostgreSQL URL safe to show (without its password).

Below the sinks, :mod:`._open` and :mod:`._migrate`, which all read or show them.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Final

from .._exceptions import ConfigError

__all__ = ["redact", "sqlite_path"]


def sqlite_path(url: str) -> str:
    """The file of a SQLAlchemy-style SQLite URL: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``."""
    path = url.removeprefix("sqlite:///")
    if path == url or not path or path == ":memory:" or "?" in path:
        raise ConfigError(
            f"invalid SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(a file: an in-memory database cannot be resumed)"
        )
    return path


def redact(dsn: str) -> str:
    """The connection URL without its password (in the user part or as a ``password`` parameter).

    Never raises: a URL too broken to parse (an unclosed IPv6 bracket) is cut back by pattern instead, so that
    the error about it can be shown without the password.
    """
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return _PASSWORD_PARAM.sub("", _USER_PASSWORD.sub(r"\1@", dsn))
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_USER_PASSWORD: Final = re.compile(r"(//[^:/@]*):[^@]*@")
_PASSWORD_PARAM: Final = re.compile(r"[?&]password=[^&#]*")
