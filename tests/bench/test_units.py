"""Bench's units: durations, percentile levels, stages, and values printed back in their unit."""

from __future__ import annotations

import argparse

import pytest

from snapcrawl import ConfigError
from snapcrawl._units import (
    format_duration,
    format_value,
    level_name,
    parse_duration,
    parse_percentiles,
    parse_share,
    parse_stages,
    parse_start_at,
    stages_arg,
)
from snapcrawl.cli import main


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("2", 2.0),
        ("0.25", 0.25),
        ("1.5m", 90.0),
        ("1m30s", 90.0),
        ("250us", 0.00025),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    """500ms, 10s, 2m, 1h; a plain number is seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2x", "-1s", "0", "0ms", "s", "1 m 2", "inf", "1s2", "m30s", "25h", "86401"])
def test_bad_durations_name_the_text(text: str) -> None:
    """A duration that is not one, or is not > 0, is a ConfigError quoting it."""
    with pytest.raises(ConfigError, match="duration") as info:
        parse_duration(text, option="--duration")
    assert repr(text) in str(info.value)


def test_argparse_type_reports_a_usage_error() -> None:
    """The argparse wrapper turns the ConfigError into argparse's own error."""
    with pytest.raises(argparse.ArgumentTypeError, match="'2x'"):
        stages_arg("2x")


def test_percentiles_are_sorted_and_distinct() -> None:
    """--percentiles 99.9,50,p95,50 -> (50, 95, 99.9), named p50, p95, p99.9."""
    levels = parse_percentiles("99.9,50,p95,50")
    assert levels == (50.0, 95.0, 99.9)
    assert [level_name(level) for level in levels] == ["p50", "p95", "p99.9"]


@pytest.mark.parametrize("text", ["", "0", "101", "50,x", "p"])
def test_bad_percentiles(text: str) -> None:
    """Levels must be in (0, 100]."""
    with pytest.raises(ConfigError, match="--percentiles"):
        parse_percentiles(text)


def test_stages() -> None:
    """30s:100,1m:500,30s:0 -> (seconds, rate) pairs."""
    assert parse_stages("30s:100,1m:500,500ms:0") == ((30.0, 100.0), (60.0, 500.0), (0.5, 0.0))


@pytest.mark.parametrize(("text", "message"), [("30s", "DURATION:RATE"), ("30s:x", "rate"), ("x:10", "duration")])
def test_bad_stages(text: str, message: str) -> None:
    """A malformed stage names itself and what is wrong."""
    with pytest.raises(ConfigError, match=message):
        parse_stages(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (30, "30s"), (90, "1m30s"), (3600, "1h"), (3720, "1h2m")]
)
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    """Durations print in the shortest form the CLI reads back."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(0.021, "%", "2.1%"), (512.5, "s", "0.5125s"), (0.75, "us", "750us"), (12.0, "ms", "12ms"), (99.5, None, "99.5")],
)
def test_values_print_in_their_unit(value: float, unit: str | None, text: str) -> None:
    """A fraction prints as a percent, milliseconds in s or us as the condition was written."""
    assert format_value(value, unit) == text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "2x", "--rate", "5"], "argument --duration: must be a duration > 0 and <= 86400 s"),
        (["--duration", "25h", "--rate", "5"], "not '25h'"),
        (["--budget", "nan", "--find-max"], "argument --budget: must be a duration"),
        (["--start-at", "yesterday", "--rate", "5"], "argument --start-at: must be a Unix time"),
        (["--stages", "10s:5", "--duration", "2s"], "--stages sets the run's length"),
        (["--rate", "5", "--max-retries", "3"], "--max-retries does not apply to bench"),
        (["--rate", "5", "--slo", "p99<1s"], "--slo is what a --find-max step must meet"),
        (["--find-max", "--slo", "p99<1"], "needs a time unit"),
        (["--find-max", "--workers", "2"], "--workers splits"),
        (["--rate", "5", "--percentiles", "0"], "--percentiles '0'"),
        (["--rate", "5", "--fail-if", "p99.99.9>1ms"], "p99.99.9"),
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad units and combinations are one clear 'snapcrawl: error' line and exit status 2, before any request."""
    try:
        status = main(["bench", "--endpoint", "http://127.0.0.1:9", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code  # type: ignore[assignment]
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("snapcrawl: error:")
    assert message in err
    assert "Traceback" not in err


def test_worker_share_and_start_time() -> None:
    """--worker 2/3 is share (1, 3); --start-at takes a Unix time or an ISO time with its offset."""
    assert parse_share("2/3") == (1, 3)
    assert parse_start_at("1767225600") == 1767225600.0
    assert parse_start_at("2026-01-01T00:00:00+00:00") == 1767225600.0
    assert parse_start_at("2026-01-01T01:00:00+01:00") == 1767225600.0
    for bad in ("0/2", "2", "a/b", "3/2"):
        with pytest.raises(ConfigError, match="--worker"):
            parse_share(bad)
    with pytest.raises(ConfigError, match="offset"):
        parse_start_at("tomorrow")
