"""One seam for instrumentation: callbacks a service sets to export metrics, with no polling.

Every callback is optional and called synchronously in the task that did the work, so it must be quick and must
not block; an exception it raises is logged once and otherwise ignored, so a broken exporter never breaks a
crawl. ``volume_id`` is ``None`` for the account-wide listing; ``page`` is 1-based.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._log import get_logger

if TYPE_CHECKING:
    from ._exceptions import SnapcrawlError
    from ._run import VolumeFailure

__all__ = ["Hooks", "fire"]

_log = get_logger("hooks")
_broken: set[str] = set()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """Callbacks for what a crawler does. Pass one to ``Crawler(hooks=...)``.

    - ``on_request(volume_id, page)``: a request is about to be sent (after its rate-limit wait).
    - ``on_response(volume_id, page, status, seconds)``: an answer arrived; ``status`` is ``None`` when none did
      (connection dropped, timeout), ``seconds`` the latency of this attempt.
    - ``on_retry(volume_id, page, attempt, delay, error)``: the request will be sent again after ``delay`` s.
    - ``on_throttle(volume_id, page, retry_after)``: the server throttled it (429, or 503 with Retry-After).
    - ``on_rate_change(rate)``: the rate limiter's rate changed (requests/s, ``None`` for no cap).
    - ``on_volume_done(volume_id, snapshots)``: a volume's listing completed, with how many snapshots it had.
    - ``on_volume_failed(failure)``: the crawl gave up on a volume (a :class:`VolumeFailure`).
    """

    on_request: Callable[[str | None, int], object] | None = None
    on_response: Callable[[str | None, int, int | None, float], object] | None = None
    on_retry: Callable[[str | None, int, int, float, SnapcrawlError], object] | None = None
    on_throttle: Callable[[str | None, int, float | None], object] | None = None
    on_rate_change: Callable[[float | None], object] | None = None
    on_volume_done: Callable[[str | None, int], object] | None = None
    on_volume_failed: Callable[[VolumeFailure], object] | None = None


def fire(hook: Callable[..., object] | None, *args: Any) -> None:
    """Call ``hook(*args)`` if set; an exception is logged (once per hook) and swallowed."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception as exc:  # a metrics exporter must never break the crawl
        name = getattr(hook, "__qualname__", repr(hook))
        if name not in _broken:
            _broken.add(name)
            _log.warning("hook.failed", hook=name, error=f"{type(exc).__name__}: {exc}")
