"""Interim: the botocore-style adaptive limiter of ``_ratelimit`` behind the :class:`Limiter` seam."""

from __future__ import annotations

from collections.abc import Mapping

from .._ratelimit import AdaptiveRateLimiter as _Legacy

__all__ = ["AdaptiveRateLimiter"]


class AdaptiveRateLimiter(_Legacy):
    """:class:`snapcrawl._ratelimit.AdaptiveRateLimiter`, speaking the :class:`Limiter` protocol."""

    def on_success(self, ticket: float = 0.0, headers: Mapping[str, str] | None = None) -> None:
        super().on_success()

    def on_throttle(  # type: ignore[override]
        self, ticket: float, retry_after: float | None = None, headers: Mapping[str, str] | None = None
    ) -> float:
        super().on_throttle(sent_at=ticket, retry_after=retry_after)
        return retry_after or 0.0
