"""What the simulator breaks (:class:`Faults`) and the per-request decisions made from it (:class:`Plan`).

::

    Faults (immutable config) --Simulator.faults = ...--> Plan (fresh random sequence, bucket, clock origin)
        per request: pause_end() -> throttle() (quota in force, token bucket) -> draw() (drop/503/502/...)

Times in a plan (quota schedule, pauses) count from the first request the plan sees, so a benchmark's phases
start when its traffic does. Every decision comes from a random sequence seeded by the simulator's seed.
"""

from __future__ import annotations

import math
import random
from typing import Final, Literal, TypeAlias

import msgspec
from msgspec.structs import force_setattr

from .dataset import Churn

__all__ = [
    "ESCAPES",
    "NO_FAULTS",
    "Faults",
    "Plan",
    "parse_maintenance",
    "parse_pause",
    "parse_quota_schedule",
]

Steps: TypeAlias = tuple[tuple[float, float], ...]
RateLimitHeaders: TypeAlias = Literal["none", "ietf", "x", "both"]
_RATELIMIT_HEADERS: Final = ("none", "ietf", "x", "both")
_VOLUME_SETS: Final = (
    "fail_volumes",
    "malformed_volumes",
    "huge_volumes",
    "bomb_volumes",
    "cycle_volumes",
    "inclusive_volumes",
    "nul_volumes",
    "big_int_volumes",
    "far_date_volumes",
    "escape_volumes",
)
#: The terminal escape sequences ``escape_volumes`` put in an error's detail: retitle the window, clear the
#: screen, and print a fake summary.
ESCAPES: Final = "\x1b]0;pwned\x07\x1b[2J\x1b[1;1Hsnapcrawl: 1000 volumes (1000 complete, 0 failed)\r\x9b31m"


class Faults(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator breaks and how often; the defaults break nothing.

    The ``*_rate`` fractions are exclusive outcomes of one draw per request, so they must add up to at most 1.
    ``rate_limit`` (requests/s, bucket of ``rate_burst``) answers 429 with ``Retry-After`` in ``retry_after``
    form; ``quota_schedule`` ``((at, rate), ...)`` changes that rate ``at`` seconds after the first request
    (before its first step ``rate_limit`` holds); ``ratelimit_headers`` adds IETF-draft and/or ``X-RateLimit-*``
    headers to every answer while a quota is in force. ``latency`` (seconds, or a uniform range) delays every
    answer, and ``stall_rate`` of the requests wait ``stall_seconds`` more (long enough to trip a client's
    timeout). ``pause`` ``((at, for), ...)`` stalls the whole server ``for`` seconds from ``at`` seconds after the
    first request. Requests for a volume in ``fail_volumes`` get 500, in ``malformed_volumes`` a 200 with broken
    JSON, in ``huge_volumes`` a valid page larger than ``huge_body_bytes``, in ``bomb_volumes`` a small gzip body
    that inflates to ``bomb_bytes``. The hostile-data volumes: in ``cycle_volumes`` marker pages go round
    (A, B, A, B...: the page after the second is the first again), in ``inclusive_volumes`` every marker page starts
    with the marker's own snapshot, ``nul_volumes`` hold NUL characters in names, descriptions and metadata,
    ``big_int_volumes`` sizes beyond 64 bits, ``far_date_volumes`` a ``created_at`` of year 1 with a +01:00 offset
    (before year 1 in UTC), and ``escape_volumes`` answer 400 with terminal escape sequences (:data:`ESCAPES`) in
    the detail. ``churn`` changes the data as it is listed; ``reject_replays`` answers 401 to
    a (timestamp, signature) pair seen before; ``gzip`` compresses bodies for clients that accept it;
    ``max_limit`` caps the page size whatever the client asks. ``latency_per_in_flight`` (seconds) adds that much
    latency for each other request in flight on arrival: latency grows with load, as a saturating server's does.
    ``maintenance`` ``((at, for), ...)`` answers every request 503 with a ``Retry-After`` (in ``retry_after`` form,
    ``seconds`` if that is ``none``) saying when the window ends, ``for`` seconds from ``at`` seconds after the first
    request, as a gateway announces maintenance.
    """

    rate_limit: float | None = None
    rate_burst: int = 10
    retry_after: Literal["seconds", "http-date", "none"] = "seconds"
    quota_schedule: Steps = ()
    ratelimit_headers: RateLimitHeaders = "none"
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency: float | tuple[float, float] = 0.0
    truncate_rate: float = 0.0
    html_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    pause: Steps = ()
    fail_volumes: frozenset[str] = frozenset()
    malformed_volumes: frozenset[str] = frozenset()
    huge_volumes: frozenset[str] = frozenset()
    huge_body_bytes: int = 8 * 1024 * 1024
    bomb_volumes: frozenset[str] = frozenset()
    bomb_bytes: int = 64 * 1024 * 1024
    cycle_volumes: frozenset[str] = frozenset()
    inclusive_volumes: frozenset[str] = frozenset()
    nul_volumes: frozenset[str] = frozenset()
    big_int_volumes: frozenset[str] = frozenset()
    far_date_volumes: frozenset[str] = frozenset()
    escape_volumes: frozenset[str] = frozenset()
    churn: Churn | None = None
    reject_replays: bool = False
    gzip: bool = False
    max_limit: int | None = None
    latency_per_in_flight: float = 0.0
    maintenance: Steps = ()

    def __post_init__(self) -> None:
        for name in _VOLUME_SETS:
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a collection of volume ids, not a string")
            force_setattr(self, name, frozenset(value))
        for name in ("quota_schedule", "pause", "maintenance"):
            force_setattr(self, name, tuple((float(at), float(value)) for at, value in getattr(self, name)))
        self._check_rates()
        _check_steps("quota_schedule", self.quota_schedule, "rate", strictly_positive=True)
        _check_steps("pause", self.pause, "duration", strictly_positive=False)
        _check_steps("maintenance", self.maintenance, "duration", strictly_positive=False)
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency, self.latency)
        if not 0.0 <= low <= high < math.inf:
            raise ValueError(f"latency must be finite seconds >= 0, or a (low, high) range, not {self.latency!r}")
        for name in ("huge_body_bytes", "bomb_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.max_limit is not None and self.max_limit < 1:
            raise ValueError(f"max_limit must be >= 1 or None, not {self.max_limit}")

    def _check_rates(self) -> None:
        rates = (self.error_rate, self.drop_rate, self.truncate_rate, self.html_rate, self.stall_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(
                "error_rate, drop_rate, truncate_rate, html_rate and stall_rate must be in [0, 1], sum <= 1"
            )
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, not {self.stall_seconds}")
        if not self.latency_per_in_flight >= 0:
            raise ValueError(f"latency_per_in_flight must be >= 0 seconds, not {self.latency_per_in_flight}")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 or None, not {self.rate_limit}")
        if self.rate_burst < 1:
            raise ValueError(f"rate_burst must be >= 1, not {self.rate_burst}")
        if self.retry_after not in ("seconds", "http-date", "none"):
            raise ValueError(f"retry_after must be 'seconds', 'http-date' or 'none', not {self.retry_after!r}")
        if self.ratelimit_headers not in _RATELIMIT_HEADERS:
            raise ValueError(
                f"ratelimit_headers must be one of {', '.join(_RATELIMIT_HEADERS)}, not {self.ratelimit_headers!r}"
            )


def _check_steps(name: str, steps: Steps, what: str, *, strictly_positive: bool) -> None:
    previous = -math.inf
    for at, value in steps:
        if not (math.isfinite(at) and at >= 0) or at <= previous:
            raise ValueError(f"{name}: times must be increasing seconds >= 0, not {at:g} after {previous:g}")
        if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
            raise ValueError(f"{name}: {what} at {at:g} s must be {'> 0' if strictly_positive else '>= 0'}")
        previous = at


#: The default :class:`Faults`: nothing breaks.
NO_FAULTS: Final = Faults()


def _parse_steps(text: str, option: str, meaning: str) -> Steps:
    steps = []
    for item in text.split(","):
        at, _, value = item.strip().partition(":")
        try:
            steps.append((float(at), float(value)))
        except ValueError:
            raise ValueError(f"{option} must be {meaning} pairs like 0:200,10:100, not {text!r}") from None
    return tuple(steps)


def parse_quota_schedule(text: str) -> Steps:
    """Parse ``AT:RATE,...`` (seconds since the first request : requests per second)."""
    return _parse_steps(text, "quota schedule", "AT:RATE")


def parse_pause(text: str) -> Steps:
    """Parse ``AT:FOR[,AT:FOR...]`` (seconds since the first request : seconds paused)."""
    return _parse_steps(text, "pause", "AT:FOR")


def parse_maintenance(text: str) -> Steps:
    """Parse ``AT:FOR[,AT:FOR...]`` (seconds since the first request : seconds of maintenance)."""
    return _parse_steps(text, "maintenance", "AT:FOR")


class _Bucket:
    """A token bucket of at most ``burst`` tokens, starting full, refilled at the rate given to each take."""

    __slots__ = ("burst", "stamp", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def refill(self, now: float, rate: float | None) -> None:
        """Add the tokens earned until ``now`` at ``rate``; without a rate (no quota) the bucket fills up."""
        if rate is None:
            self.tokens = float(self.burst)
        elif now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float, rate: float) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one will be."""
        self.refill(now, rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class Plan:
    """The active :class:`Faults`, precomputed for the request path and swapped whole.

    ``origin`` is the ``time.monotonic()`` of the first request under this plan; schedules count from it.
    """

    __slots__ = (
        "bucket",
        "churn_rng",
        "cuts",
        "draw",
        "faults",
        "latency",
        "limited",
        "maintenance",
        "origin",
        "pauses",
        "rng",
        "volumes",
    )

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.churn_rng = random.Random(f"churn/{seed}")
        self.origin: float | None = None
        self.bucket: _Bucket | None = None
        self.limited = faults.rate_limit is not None or bool(faults.quota_schedule)
        drop = faults.drop_rate
        error = drop + faults.error_rate
        html = error + faults.html_rate
        truncate = html + faults.truncate_rate
        self.cuts = (drop, error, html, truncate, truncate + faults.stall_rate)
        self.draw = self.cuts[-1] > 0.0
        self.latency = faults.latency
        self.volumes = frozenset().union(*(getattr(faults, name) for name in _VOLUME_SETS))
        self.pauses = tuple((at, at + length) for at, length in faults.pause if length > 0)
        self.maintenance = tuple((at, at + length) for at, length in faults.maintenance if length > 0)

    def arrive(self, now: float) -> None:
        """Note a request's arrival: the first one starts this plan's clock."""
        if self.origin is None:
            self.origin = now

    def quota(self, now: float) -> float | None:
        """The rate limit in force at ``now`` (requests/s), ``None`` for none."""
        rate = self.faults.rate_limit
        if self.faults.quota_schedule:
            elapsed = now - (now if self.origin is None else self.origin)
            for at, step in self.faults.quota_schedule:
                if at > elapsed:
                    break
                rate = step
        return rate

    def throttle(self, now: float) -> tuple[float | None, float, float]:
        """Spend a token: ``(rate in force, seconds until a token frees or 0.0, whole tokens left)``."""
        rate = self.quota(now)
        if rate is None:
            return None, 0.0, 0.0
        bucket = self.bucket
        if bucket is None:
            bucket = self.bucket = _Bucket(self.faults.rate_burst, now)
        if self.faults.quota_schedule and self.origin is not None:
            # Tokens earned before a step of the schedule were earned at the rate before it.
            previous = self.faults.rate_limit
            for at, step in self.faults.quota_schedule:
                boundary = self.origin + at
                if boundary > now:
                    break
                if boundary > bucket.stamp:
                    bucket.refill(boundary, previous)
                previous = step
        return rate, bucket.take(now, rate), bucket.tokens

    def pause_end(self, now: float) -> float | None:
        """The ``time.monotonic()`` at which a pause covering ``now`` ends, or ``None`` if none does."""
        return _window_end(self.pauses, self.origin, now)

    def maintenance_end(self, now: float) -> float | None:
        """The ``time.monotonic()`` at which a maintenance window covering ``now`` ends, or ``None`` if none does."""
        return _window_end(self.maintenance, self.origin, now)

    def delay(self) -> float:
        """The latency of one answer."""
        latency = self.latency
        return self.rng.uniform(*latency) if isinstance(latency, tuple) else latency

    def fault(self) -> Literal["drop", "error", "html", "truncate", "stall"] | None:
        """One draw: which random fault, if any, this request gets."""
        roll = self.rng.random()
        drop, error, html, truncate, stall = self.cuts
        if roll < drop:
            return "drop"
        if roll < error:
            return "error"
        if roll < html:
            return "html"
        return "truncate" if roll < truncate else "stall" if roll < stall else None


def _window_end(windows: Steps, origin: float | None, now: float) -> float | None:
    """The end of the ``(start, stop)`` window (seconds after ``origin``) covering ``now``, or ``None``.

    Windows may touch: they are followed to the last one's end.
    """
    if not windows or origin is None:
        return None
    elapsed, end = now - origin, None
    for start, stop in windows:
        if start <= elapsed < stop:
            elapsed = stop
            end = origin + stop
    return end
