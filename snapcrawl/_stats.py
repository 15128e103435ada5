"""Counters of a crawl, and a fixed-size latency histogram whose memory does not grow with the crawl."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CrawlStats", "LatencyHistogram"]

_log = math.log
_PER_E = 44  # buckets per factor e: exp(1/44) = 1.023
_FLOOR = 1e-5
_LAST = 44 * 19 - 1


class LatencyHistogram:
    """Latencies in log-spaced buckets 2.3% wide, from 10 µs to about 20 minutes; percentiles within 2.3%."""

    __slots__ = ("_buckets", "count")

    _PER_E = _PER_E
    _FLOOR = _FLOOR
    _SIZE = _LAST + 1

    def __init__(self) -> None:
        self._buckets = [0] * self._SIZE
        self.count = 0

    def record(self, seconds: float) -> None:
        """Add one latency (once per request: written for speed, the same buckets as ``log(max(s, floor) / floor)``)."""
        index = int(_log(seconds / _FLOOR) * _PER_E) if seconds > _FLOOR else 0
        self._buckets[index if index < _LAST else _LAST] += 1
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        """Add every latency ``other`` recorded."""
        for index, n in enumerate(other._buckets):
            if n:
                self._buckets[index] += n
        self.count += other.count

    def percentile(self, fraction: float) -> float | None:
        """The latency below which ``fraction`` (0..1) of the recorded ones fall; ``None`` if empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return self._FLOOR * math.exp((index + 0.5) / self._PER_E)
        raise AssertionError("unreachable: ranks never exceed the count")


@dataclasses.dataclass(slots=True, kw_only=True)
class CrawlStats:
    """What one crawl has done so far (or, as ``Crawler.stats``, every finished crawl of a crawler added up).

    ``snapshots_expected`` is the server's ``count`` for an account-wide listing: a hint for progress and ETA.
    ``started_at`` and ``ended_at`` are readings of ``clock`` (the crawler's injectable monotonic clock), which
    ``elapsed`` reads too, so that a faked clock gives faked durations.
    """

    requests: int = 0
    pages: int = 0
    snapshots: int = 0
    retries: int = 0
    throttled: int = 0
    bytes: int = 0
    volumes_seen: int = 0
    volumes_done: int = 0
    volumes_failed: int = 0
    volumes_skipped: int = 0
    marker_recoveries: int = 0
    #: Snapshots a server listed again within one walk (a broken cursor), dropped.
    duplicates_dropped: int = 0
    #: Pages that repeated the marker's own snapshot first (an inclusive marker), that snapshot dropped.
    inclusive_markers: int = 0
    snapshots_expected: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    latency: LatencyHistogram = dataclasses.field(default_factory=LatencyHistogram, repr=False)
    clock: Callable[[], float] = dataclasses.field(default=time.monotonic, repr=False, compare=False)

    _COUNTERS = (
        "requests",
        "pages",
        "snapshots",
        "retries",
        "throttled",
        "bytes",
        "volumes_seen",
        "volumes_done",
        "volumes_failed",
        "volumes_skipped",
        "marker_recoveries",
        "duplicates_dropped",
        "inclusive_markers",
    )

    def add(self, other: CrawlStats) -> None:
        """Add another crawl's counts and latencies to these (crawler-wide totals stay a fixed size)."""
        for name in self._COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.merge(other.latency)
        if other.started_at is not None and (self.started_at is None or other.started_at < self.started_at):
            self.started_at = other.started_at
        if other.ended_at is not None and (self.ended_at is None or other.ended_at > self.ended_at):
            self.ended_at = other.ended_at

    @property
    def elapsed(self) -> float:
        """Seconds spent crawling."""
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else self.clock()
        return end - self.started_at

    @property
    def requests_per_second(self) -> float:
        """Average request rate over ``elapsed``."""
        elapsed = self.elapsed
        return self.requests / elapsed if elapsed > 0 else 0.0

    def latency_ms(self) -> dict[str, float | None]:
        """Latency percentiles p50, p90, p99 and p99.9 in milliseconds."""
        return {
            name: None if (value := self.latency.percentile(q)) is None else round(value * 1000, 2)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values."""
        return {
            "requests": self.requests,
            "pages": self.pages,
            "snapshots": self.snapshots,
            "retries": self.retries,
            "throttled": self.throttled,
            "bytes": self.bytes,
            "volumes_seen": self.volumes_seen,
            "volumes_done": self.volumes_done,
            "volumes_failed": self.volumes_failed,
            "volumes_skipped": self.volumes_skipped,
            "marker_recoveries": self.marker_recoveries,
            "duplicates_dropped": self.duplicates_dropped,
            "inclusive_markers": self.inclusive_markers,
            "elapsed_s": round(self.elapsed, 3),
            "requests_per_s": round(self.requests_per_second, 1),
            "latency_ms": self.latency_ms(),
        }
