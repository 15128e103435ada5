"""Rate limiters: what decides when the next request may go, and how fast the crawl may run."""

from ._base import Limiter
from ._headers import Quota
from .local import LocalLimiter

__all__ = ["Limiter", "LocalLimiter", "Quota"]
