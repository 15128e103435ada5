"""Which account a row belongs to: a fleet config's name, or one derived from the endpoint and the access key.

A single-account crawl (no ``--config``) gets ``<endpoint host>/<12 hex digits of sha256(access key)>``, never a
constant: two single-account crawls of different keys or endpoints into one table keep apart (and never prune
each other's rows), while the same setup run again finds its own rows. The access key is hashed so that it is
not spread through every row of an inventory.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

__all__ = ["default_account", "endpoint_host"]


def endpoint_host(endpoint: str) -> str:
    """What identifies the endpoint in a row: its host (and port, when not the scheme's default), lower case."""
    parts = urlsplit(endpoint)
    return parts.netloc.lower() or endpoint


def default_account(endpoint: str, access_key: str) -> str:
    """The account name of a crawl without a fleet config."""
    digest = hashlib.sha256(access_key.encode()).hexdigest()[:12]
    return f"{endpoint_host(endpoint)}/{digest}"
