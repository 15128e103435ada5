"""snapcrawl: crawl the Samsung Cloud Platform "List snapshots" API fast, and without losing a snapshot.

Start with :class:`Crawler`; :mod:`snapcrawl.simulator` is a local SCP server to test against.
"""

from ._checkpoint import Checkpoint, VolumeState
from ._config import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    DEFAULT_RETRY,
    ApiVersion,
    Credentials,
    RetryPolicy,
    load_credentials,
    resolve_endpoint,
)
from ._crawler import Crawler, Page, SnapshotStream, VolumeFailure
from ._exceptions import (
    ApiError,
    AuthError,
    ConfigError,
    DecodeError,
    NotFoundError,
    PaginationError,
    RequestError,
    ServerError,
    SinkError,
    SnapcrawlError,
    ThrottledError,
    TransportError,
)
from ._models import Snapshot, SnapshotPage
from ._output import JsonLinesWriter
from ._signing import Signer, encode_query, make_signature
from ._stats import CrawlStats
from ._transport import AiohttpTransport, Response, Transport

__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "DEFAULT_RETRY",
    "AiohttpTransport",
    "ApiError",
    "ApiVersion",
    "AuthError",
    "Checkpoint",
    "ConfigError",
    "CrawlStats",
    "Crawler",
    "Credentials",
    "DecodeError",
    "JsonLinesWriter",
    "NotFoundError",
    "Page",
    "PaginationError",
    "RequestError",
    "Response",
    "RetryPolicy",
    "ServerError",
    "Signer",
    "SinkError",
    "SnapcrawlError",
    "Snapshot",
    "SnapshotPage",
    "SnapshotStream",
    "ThrottledError",
    "Transport",
    "TransportError",
    "VolumeFailure",
    "VolumeState",
    "encode_query",
    "load_credentials",
    "make_signature",
    "resolve_endpoint",
]
