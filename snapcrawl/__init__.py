"""snapcrawl: crawl the Samsung Cloud Platform "List snapshots" API fast, and without losing a snapshot.

Start with :class:`Crawler`; :mod:`snapcrawl.simulator` is a local SCP server to test against, and
:mod:`snapcrawl.sinks` holds the destinations (JSON Lines, SQLite, PostgreSQL). Request signing for a client of
your own is :mod:`snapcrawl.signing`; the HTTP seam, with its :class:`~snapcrawl.transport.Response`, is
:mod:`snapcrawl.transport`.
"""

from importlib import metadata as _metadata

from ._config import (
    DEFAULT_API_VERSION,
    DEFAULT_RETRY,
    Credentials,
    RetryPolicy,
    load_credentials,
    resolve_endpoint,
)
from ._crawler import Crawler
from ._events import (
    Event,
    Hooks,
    RateChanged,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    Throttled,
    VolumeDone,
    VolumeFailed,
)
from ._exceptions import (
    ApiError,
    AuthError,
    BadRequestError,
    BusyError,
    ConfigError,
    DecodeError,
    NotFoundError,
    PaginationError,
    ServerError,
    SinkError,
    SnapcrawlError,
    ThrottledError,
    TransportError,
    UnfitValueError,
)
from ._models import CrawlResult, Page, Snapshot, VolumeFailure
from ._stats import CrawlStats
from ._stream import CrawlStream
from ._transport import AiohttpTransport, Transport
from .limits import Limiter
from .sinks import Sink

try:
    # One source for the version: the installed distribution's metadata, which pyproject.toml writes.
    __version__: str = _metadata.version("snapcrawl")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_RETRY",
    "AiohttpTransport",
    "ApiError",
    "AuthError",
    "BadRequestError",
    "BusyError",
    "ConfigError",
    "CrawlResult",
    "CrawlStats",
    "CrawlStream",
    "Crawler",
    "Credentials",
    "DecodeError",
    "Event",
    "Hooks",
    "Limiter",
    "NotFoundError",
    "Page",
    "PaginationError",
    "RateChanged",
    "RequestSent",
    "ResponseReceived",
    "RetryPolicy",
    "RetryScheduled",
    "ServerError",
    "Sink",
    "SinkError",
    "SnapcrawlError",
    "Snapshot",
    "Throttled",
    "ThrottledError",
    "Transport",
    "TransportError",
    "UnfitValueError",
    "VolumeDone",
    "VolumeFailed",
    "VolumeFailure",
    "load_credentials",
    "resolve_endpoint",
]
