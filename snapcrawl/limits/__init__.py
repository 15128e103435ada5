"""Rate limiters: what decides when the next request may go, and how fast the crawl may run."""

from ._base import Limiter
from ._headers import Quota, read_quota
from ._policy import RateDiscovery
from .local import LocalLimiter, TokenBucket

__all__ = ["Limiter", "LocalLimiter", "Quota", "RateDiscovery", "TokenBucket", "read_quota"]
