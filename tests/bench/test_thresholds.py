"""``--fail-if`` conditions: parsing with units, clear errors, and evaluation against a report."""

from __future__ import annotations

import msgspec
import pytest

from snapcrawl import ConfigError
from snapcrawl.bench import BenchReport, Latency, Threshold, summary
from snapcrawl.bench._hist import Histogram
from snapcrawl.bench._report import Histograms


def _report(*, p99: float = 20.0, failed: int = 0, throttled: int = 0, requests: int = 1000) -> BenchReport:
    latency = Latency(p50=2.0, p90=10.0, p99=p99, p99_9=p99, max=p99, mean=3.0)
    return BenchReport(
        mode="open",
        endpoint="http://127.0.0.1:1",
        requests=requests,
        duration_s=10.0,
        target_rps=100.0,
        achieved_rps=100.0,
        concurrency=None,
        max_in_flight=1000,
        status={"200": requests - failed - throttled, "429": throttled},
        errors={},
        throttled=throttled,
        failed=failed,
        held_back=0,
        latency_ms=latency,
        latency_uncorrected_ms=latency,
        scheduling_lag_ms=latency,
        timeline=[],
        spectrum_ms={},
    )


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("p99>500ms", "p99", 500.0),
        ("p99.9 > 1.5s", "p99.9", 1500.0),
        ("mean>=250us", "mean", 0.25),
        ("errors>1%", "errors", 0.01),
        ("throttled>2.5%", "throttled", 0.025),
        ("rps<100", "rps", 100.0),
    ],
)
def test_parse(text: str, metric: str, limit: float) -> None:
    """Units convert to milliseconds, percentages to fractions."""
    threshold = Threshold.parse(text)
    assert (threshold.metric, threshold.limit) == (metric, pytest.approx(limit))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99>500", "needs a time unit"),
        ("errors>1", "percentage"),
        ("rps<100ms", "plain number"),
        ("p100.5>1ms", "expected a percentile in"),
        ("p0>1ms", "expected a percentile in"),
        ("latency>1ms", "unknown metric 'latency'"),
        ("p95>2m", "expected METRIC>VALUE"),
        ("p99 is big", "expected METRIC>VALUE"),
    ],
)
def test_bad_conditions_name_what_is_wrong(text: str, message: str) -> None:
    """A malformed condition is a ConfigError that quotes it and says what is wrong."""
    with pytest.raises(ConfigError, match=message) as info:
        Threshold.parse(text)
    assert text in str(info.value)


def test_check_against_a_report() -> None:
    """A condition that holds is breached; one that does not is not."""
    report = _report(p99=600.0, failed=5, throttled=30)
    assert Threshold.parse("p99>500ms").check(report).breached
    assert not Threshold.parse("p99>1s").check(report).breached
    assert not Threshold.parse("errors>1%").check(report).breached
    assert Threshold.parse("errors>0.4%").check(report).breached
    result = Threshold.parse("throttled>2%").check(report)
    assert result.breached
    assert result.value == pytest.approx(0.03)
    assert Threshold.parse("rps<150").check(report).breached


def _measured(latencies_ms: list[float]) -> BenchReport:
    """A report whose saved histogram holds exactly ``latencies_ms``."""
    histogram = Histogram()
    for value in latencies_ms:
        histogram.record(round(value * 1000))
    saved = histogram.save()
    return msgspec.structs.replace(
        _report(), histograms=Histograms(corrected=saved, uncorrected=saved, lag=Histogram().save())
    )


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [("p95>100ms", "p95", 100.0), ("p99.99 < 2s", "p99.99", 2000.0), ("p75>=250us", "p75", 0.25)],
)
def test_any_percentile_parses(text: str, metric: str, limit: float) -> None:
    """pNN and pNN.N name any percentile, with a time unit."""
    threshold = Threshold.parse(text)
    assert (threshold.metric, threshold.limit) == (metric, pytest.approx(limit))


def test_any_percentile_is_measured_from_the_saved_histogram() -> None:
    """p95 and p75 of 1..100 ms are 95 and 75 ms (within HDR precision), not a neighbouring fixed column."""
    report = _measured([float(ms) for ms in range(1, 101)])
    assert Threshold.parse("p95>1ms").measure(report) == pytest.approx(95.0, rel=0.001)
    assert Threshold.parse("p75>1ms").measure(report) == pytest.approx(75.0, rel=0.001)
    assert Threshold.parse("p95>94ms").check(report).breached
    assert not Threshold.parse("p95>96ms").check(report).breached


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("p99 > 0.5s", "0.6s"),
        ("p99>500ms", "600ms"),
        ("p99>100000us", "600000us"),
        ("throttled>2%", "3%"),
        ("errors>1%", "0.5%"),
        ("rps<100", "100"),
    ],
)
def test_values_are_printed_in_the_conditions_unit(text: str, shown: str) -> None:
    """A value is shown in the unit its condition was written in: seconds stay seconds, a percent a percent."""
    report = _report(p99=600.0, failed=5, throttled=30)
    result = Threshold.parse(text).check(report)
    assert result.shown == shown
    assert f"threshold {text!r}: {shown} ->" in summary(msgspec.structs.replace(report, thresholds=[result]))


def test_an_slo_is_missed_when_its_condition_does_not_hold() -> None:
    """--slo passes a step when it holds: meet() is breached exactly when check() would not be."""
    report = _report(p99=600.0)
    assert Threshold.parse("p99<500ms", option="--slo").meet(report).breached
    assert not Threshold.parse("p99<1s", option="--slo").meet(report).breached
