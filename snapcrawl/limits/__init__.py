"""Rate limiters: what decides when the next request may go, and how fast the crawl may run."""

from ._base import Limiter

__all__ = ["Limiter"]
