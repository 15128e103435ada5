"""What a bench run does: the endpoint and credentials, the request, the load model and the find-max search.

Immutable and keyword-only like the crawler's settings; every bad value is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from .._config import Credentials, api_version
from .._exceptions import ConfigError
from .._units import DEFAULT_PERCENTILES, Stage
from ._ramp import Profile
from ._thresholds import Threshold

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_DURATION",
    "DEFAULT_MAX_FAILED",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_RATE",
    "DEFAULT_STEP_DURATION",
    "BenchConfig",
]

DEFAULT_DURATION: Final = 10.0
#: High enough that the cap holds nothing back at the rates one client can send, below a typical fd limit.
DEFAULT_MAX_IN_FLIGHT: Final = 1000
DEFAULT_MAX_RATE: Final = 10_000.0
DEFAULT_BUDGET: Final = 90.0
DEFAULT_STEP_DURATION: Final = 3.0
#: The fraction of throttled or failed requests a find-max step may have and still pass.
DEFAULT_MAX_FAILED: Final = 0.01

Mode = Literal["open", "closed", "find-max"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    """One bench run. One load model: ``rate`` (open loop), ``stages`` (an open loop ramping from ``rate``, or 0,
    linearly to each stage's target over its duration), ``concurrency`` (closed loop) or ``find_max``.

    ``endpoint`` and ``credentials`` default to the environment and ``~/.scpconf``, as for the crawler. Each
    request is the first page of one of ``volume_ids``, round robin, or of the account listing when there are
    none. With ``find_max``, ``rate`` (if given) is where the search starts, each step lasts ``step_duration``
    seconds, and the whole search stays within ``budget`` seconds; a step passes with at most ``max_failed`` of
    its requests throttled or failed and every ``slo`` condition holding (``slo_p99_ms=200`` is ``slo=("p99<200ms",)``).
    ``fail_if`` holds ``--fail-if`` conditions (see :class:`Threshold`) for open and closed loops. ``percentiles``
    are the report's latency levels. ``workers`` load-generating processes share the load (see ``run_workers``).
    """

    endpoint: str | None = None
    region: str | None = None
    environment: str | None = None
    credentials: Credentials | None = None
    api_version: str = "1.3"
    page_size: int = 100
    name: str | None = None
    sort: str | None = None
    timeout: float = 30.0
    verify_tls: bool = True
    volume_ids: tuple[str, ...] = ()
    rate: float | None = None
    concurrency: int | None = None
    duration: float = DEFAULT_DURATION
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    find_max: bool = False
    max_rate: float = DEFAULT_MAX_RATE
    slo_p99_ms: float | None = None
    budget: float = DEFAULT_BUDGET
    step_duration: float = DEFAULT_STEP_DURATION
    max_failed: float = DEFAULT_MAX_FAILED
    fail_if: tuple[str, ...] = ()
    stages: tuple[Stage, ...] = ()
    slo: tuple[str, ...] = ()
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    workers: int = 1

    def __post_init__(self) -> None:
        self._check_volumes()
        self._check_load()
        self._check_numbers()
        for name in ("fail_if", "slo", "stages", "percentiles"):
            _not_a_string(name, getattr(self, name))
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.fail_if and self.find_max:
            raise ConfigError("fail_if applies to rate or concurrency runs; find_max judges its steps itself")
        for condition in self.fail_if:
            Threshold.parse(condition)
        self._check_slo()
        self._check_stages()
        if not self.percentiles or not all(0 < level <= 100 for level in self.percentiles):
            raise ConfigError(f"percentiles must be levels in (0, 100], not {self.percentiles!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, not {self.workers}")
        if self.workers > 1 and self.find_max:
            raise ConfigError("workers split a --rate, --stages or --concurrency run; find-max runs in one process")
        if self.concurrency is not None and self.concurrency < self.workers:
            raise ConfigError(f"concurrency {self.concurrency} cannot be shared by {self.workers} workers")
        api_version(self.api_version, sort=self.sort)

    def _check_slo(self) -> None:
        if self.slo_p99_ms is not None:  # the older spelling of --slo 'p99<MSms'
            object.__setattr__(self, "slo", (*self.slo, f"p99<{self.slo_p99_ms:g}ms"))
            object.__setattr__(self, "slo_p99_ms", None)
        if self.slo and not self.find_max:
            raise ConfigError("slo sets what a find-max step must meet; for a --rate run use fail_if")
        for condition in self.slo:
            Threshold.parse(condition, option="--slo")

    def _check_stages(self) -> None:
        if not self.stages:
            return
        if self.find_max or self.concurrency is not None:
            raise ConfigError("stages ramp an open loop's rate: not with find_max or concurrency")
        for duration, target in self.stages:
            if not duration > 0 or not target >= 0:
                raise ConfigError(f"stage {duration:g}s:{target:g} needs a duration > 0 and a rate >= 0")
        if not self.profile.total:
            raise ConfigError(f"stages {self.stages!r} send no request")

    def _check_volumes(self) -> None:
        _not_a_string("volume_ids", self.volume_ids)
        object.__setattr__(self, "volume_ids", tuple(self.volume_ids))
        for volume_id in self.volume_ids:
            if not volume_id.strip() or len(volume_id) > 255:
                raise ConfigError(f"volume id {volume_id!r} is empty, blank or over 255 characters")

    def _check_load(self) -> None:
        models = [name for name, on in (("rate", self.rate), ("concurrency", self.concurrency)) if on is not None]
        if self.stages and self.rate is None:
            models.append("stages")  # ramping from 0
        if self.find_max:
            if self.concurrency is not None:
                raise ConfigError("find_max searches an arrival rate; it cannot be combined with concurrency")
        elif len(models) != 1:
            raise ConfigError(
                "choose one load model: rate or stages (open loop), concurrency (closed loop) or find_max"
            )
        if self.find_max and self.rate is not None and self.rate > self.max_rate:
            raise ConfigError(f"the starting rate {self.rate:g} is above max_rate {self.max_rate:g}")

    def _check_numbers(self) -> None:
        _positive("rate", self.rate)
        _positive("duration", self.duration)
        _positive("timeout", self.timeout)
        _positive("max_rate", self.max_rate)
        _positive("budget", self.budget)
        _positive("step_duration", self.step_duration)
        _positive("slo_p99_ms", self.slo_p99_ms)
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, not {self.concurrency}")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be >= 1, not {self.max_in_flight}")
        if not 1 <= self.page_size <= 1000:
            raise ConfigError(f"page_size must be in 1..1000, not {self.page_size}")
        if not 0.0 <= self.max_failed < 1.0:
            raise ConfigError(f"max_failed must be a fraction in [0, 1), not {self.max_failed}")
        if not (self.find_max or self.stages) and self.rate is not None and self.rate * self.duration < 1:
            raise ConfigError(f"rate {self.rate:g} for duration {self.duration:g} s sends no request")

    @property
    def thresholds(self) -> tuple[Threshold, ...]:
        """The ``fail_if`` conditions, parsed."""
        return tuple(Threshold.parse(condition) for condition in self.fail_if)

    @property
    def profile(self) -> Profile:
        """The open loop's arrival profile: the stages from ``rate`` (or 0), else ``rate`` for ``duration``."""
        if self.stages:
            return Profile(self.stages, start=self.rate or 0.0)
        return Profile.constant(self.rate or 0.0, self.duration)

    @property
    def slos(self) -> tuple[Threshold, ...]:
        """The ``slo`` objectives, parsed."""
        return tuple(Threshold.parse(condition, option="--slo") for condition in self.slo)

    @property
    def mode(self) -> Mode:
        """Which load model this run uses."""
        if self.find_max:
            return "find-max"
        return "open" if self.rate is not None or self.stages else "closed"


def _not_a_string(name: str, value: object) -> None:
    """A lone string would be taken apart into one-character items: reject it instead."""
    if isinstance(value, str):
        raise ConfigError(f"{name} must be a collection of strings, not a string")


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{name} must be > 0, not {value}")
