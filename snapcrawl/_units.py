"""Bench's units, read and written one way: durations (``500ms``, ``10s``, ``2m``, ``1h``), latencies (``us``,
``ms``, ``s``), percentile levels (``p99.9``), stages (``30s:100,1m:500``), and each value printed in its unit.

Every parser raises :class:`ConfigError` naming the option and the text; the ``*_arg`` wrappers turn that into
the argparse error the CLI prints (durations and start times, numbers, go through the CLI's bounded type around
these parsers), so bench's options parse here and nowhere else. It sits outside :mod:`snapcrawl.bench`, whose
package needs the ``bench`` extra, because every command's parser is built at start-up: the CLI must start
without hdrhistogram.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Final, TypeVar

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_PERCENTILES",
    "Stage",
    "format_duration",
    "format_value",
    "level_name",
    "parse_duration",
    "parse_latency_ms",
    "parse_level",
    "parse_percentiles",
    "parse_share",
    "parse_stages",
    "parse_start_at",
    "percentiles_arg",
    "share_arg",
    "stages_arg",
]

#: The report's latency columns unless ``--percentiles`` says otherwise.
DEFAULT_PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
#: The longest duration bench takes (as the CLI's other durations): a day.
LONGEST: Final = 86_400.0
#: One stage of a ramp: ``(seconds, target requests/s at its end)``.
Stage = tuple[float, float]

_DURATION_UNITS: Final = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_LATENCY_UNITS_MS: Final = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_NUMBER: Final = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN: Final = re.compile(_NUMBER)
_PART: Final = re.compile(rf"{_NUMBER}(us|µs|ms|s|m|h)")
_DURATION: Final = re.compile(rf"(?:{_NUMBER}(?:us|µs|ms|s|m|h))+")
_LEVEL: Final = re.compile(rf"p?{_NUMBER}")


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds from ``500ms``, ``10s``, ``2m``, ``1h``, ``1m30s`` or a plain number of seconds; > 0."""
    compact = text.strip()
    if _PLAIN.fullmatch(compact):
        seconds = float(compact)
    elif _DURATION.fullmatch(compact):
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _PART.findall(compact))
    else:
        raise ConfigError(
            f"{option} {text!r}: expected a duration such as 500ms, 10s, 2m, 1m30s or 1h (plain: seconds)"
        )
    if not 0 < seconds <= LONGEST:
        raise ConfigError(f"{option} {text!r}: must be a duration > 0 and at most a day ({LONGEST:g} s)")
    return seconds


def parse_latency_ms(number: str, unit: str | None, *, what: str) -> float:
    """Milliseconds from a number and ``us``, ``ms`` or ``s``; ``what`` names the text in the error."""
    if unit not in _LATENCY_UNITS_MS:
        raise ConfigError(f"{what}: a latency needs a time unit (us, ms or s), e.g. 500ms")
    return float(number) * _LATENCY_UNITS_MS[unit]


def parse_level(text: str, *, option: str = "percentile") -> float:
    """A percentile level from ``99.9`` or ``p99.9``, in (0, 100]."""
    match = _LEVEL.fullmatch(text.strip())
    level = float(match.group(1)) if match else math.nan
    if not 0 < level <= 100:
        raise ConfigError(f"{option} {text!r}: expected a percentile in (0, 100], e.g. 95 or 99.9")
    return level


def parse_percentiles(text: str) -> tuple[float, ...]:
    """``50,90,95,99,99.9`` as sorted, distinct levels."""
    levels = {parse_level(part, option="--percentiles") for part in text.split(",") if part.strip()}
    if not levels:
        raise ConfigError(f"--percentiles {text!r}: give at least one level, e.g. 50,90,99")
    return tuple(sorted(levels))


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``30s:100,1m:500,30s:0``: ramp linearly to each target rate (requests/s) over each duration."""
    stages = []
    for part in text.split(","):
        duration, sep, target = part.partition(":")
        if not sep:
            raise ConfigError(f"--stages {text!r}: each stage is DURATION:RATE, e.g. 30s:100, not {part.strip()!r}")
        try:
            rate = float(target)
        except ValueError:
            rate = math.nan
        if not 0 <= rate < math.inf:
            raise ConfigError(f"--stages {text!r}: the rate of {part.strip()!r} must be a number >= 0 (req/s)")
        stages.append((parse_duration(duration, option="--stages"), rate))
    return tuple(stages)


def parse_share(text: str) -> tuple[int, int]:
    """``--worker I/N`` (1-based) as ``(I - 1, N)``: this process is worker I of N."""
    index, sep, count = text.partition("/")
    if sep and index.strip().isdigit() and count.strip().isdigit() and 1 <= int(index) <= int(count):
        return int(index) - 1, int(count)
    raise ConfigError(f"--worker {text!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2 on two machines")


def parse_start_at(text: str) -> float:
    """``--start-at``: a Unix time (``1767225600``) or an ISO 8601 time with its UTC offset."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(
            f"--start-at {text!r}: expected a Unix time or an ISO 8601 time with its offset, e.g. 2026-12-02T14:00:00Z"
        )
    return moment.timestamp()


def level_name(level: float) -> str:
    """``p99.9`` for 99.9, ``p50`` for 50: the name a percentile has in reports and JSON."""
    return f"p{level:g}"


def format_duration(seconds: float) -> str:
    """``1h``, ``2m``, ``30s``, ``1m30s``, ``250ms``: the shortest form the CLI would read back."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest:g}s"
    hours, minutes = divmod(int(minutes), 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{rest:g}s" if rest else "")


def format_value(value: float, unit: str | None) -> str:
    """A value kept in bench's base unit (milliseconds, a fraction, a rate) printed in ``unit``, as written."""
    if unit == "%":
        return f"{_number(value * 100)}%"
    if unit in _LATENCY_UNITS_MS:
        return f"{_number(value / _LATENCY_UNITS_MS[unit])}{unit}"
    return _number(value)


def _number(value: float) -> str:
    """Four significant digits, and never an exponent."""
    return f"{value:.4g}" if abs(value) < 10_000 else f"{value:.0f}"


T = TypeVar("T")


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` that reports a :class:`ConfigError` as argparse's own usage error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


percentiles_arg: Final = _argument(parse_percentiles)
share_arg: Final = _argument(parse_share)
stages_arg: Final = _argument(parse_stages)
