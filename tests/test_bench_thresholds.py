"""``--fail-if`` conditions: parsing with units, clear errors, and evaluation against a report."""

from __future__ import annotations

import pytest

from snapcrawl import ConfigError
from snapcrawl.bench import BenchReport, Latency, Threshold


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
        ("p42>1ms", "unknown metric 'p42'"),
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
