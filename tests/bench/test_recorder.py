"""Recording: HDR precision over the whole range, counts by status and error, the per-second timeline."""

from __future__ import annotations

import pytest

from snapcrawl.bench._hist import spectrum_levels
from snapcrawl.bench._recorder import Recorder, is_failure


@pytest.mark.parametrize("seconds", [0.000001, 0.000037, 0.0021, 0.75, 13.0, 1234.5, 3599.0])
def test_latency_is_within_one_percent_from_a_microsecond_to_an_hour(seconds: float) -> None:
    """A single recorded latency comes back within 1% at every percentile."""
    recorder = Recorder(100.0)
    recorder.on_done(intended=100.0, sent=100.0, done=100.0 + seconds, status=200, error=None)
    latency = recorder.latency()
    for value in (latency.p50, latency.p99, latency.max, latency.mean):
        assert value == pytest.approx(seconds * 1000, rel=0.01)


def test_corrected_and_uncorrected_latency_differ_by_the_wait_before_sending() -> None:
    """Latency from the intended time includes the wait; from the actual send it does not."""
    recorder = Recorder(0.0)
    recorder.on_done(intended=0.0, sent=1.0, done=1.002, status=200, error=None)
    assert recorder.latency().max == pytest.approx(1002, rel=0.01)
    assert recorder.uncorrected.value_at(100.0) == pytest.approx(2, rel=0.01)


def test_counts_statuses_throttles_and_failures() -> None:
    """429 is throttled; other 4xx/5xx and transport errors are failed; 2xx/3xx are neither."""
    recorder = Recorder(0.0)
    for status in (200, 200, 304, 429, 429, 503, 404):
        recorder.on_done(intended=0.0, sent=0.0, done=0.01, status=status, error=None)
    recorder.on_done(intended=0.0, sent=0.0, done=0.01, status=None, error="ServerDisconnectedError")
    assert recorder.completed == 8
    assert recorder.throttled == 2
    assert recorder.failed == 3
    assert dict(recorder.errors) == {"ServerDisconnectedError": 1}
    assert [is_failure(status) for status in (200, 302, 400, 429, 500)] == [False, False, True, False, True]


def test_timeline_counts_by_send_and_completion_and_latency_by_due_second() -> None:
    """Sent and completed count when they happened; latency percentiles belong to the second a request was due."""
    recorder = Recorder(10.0)
    for i in range(10):
        at = 10.0 + i * 0.1
        recorder.on_send(intended=at, at=at, lag=0.0, held_back=False)
        recorder.on_done(intended=at, sent=at, done=at + 0.005, status=200, error=None)
    recorder.on_send(intended=10.95, at=11.2, lag=0.0, held_back=True)
    recorder.on_done(intended=10.95, sent=11.2, done=12.5, status=503, error=None)
    rows = recorder.timeline()
    assert [row.second for row in rows] == [0, 1, 2]
    assert [row.sent for row in rows] == [10, 1, 0]
    assert [row.completed for row in rows] == [10, 0, 1]
    assert rows[0].status == {"200": 10}
    assert rows[2].status == {"503": 1}
    assert rows[0].p50_ms == pytest.approx(5, rel=0.01)
    assert rows[0].max_ms == pytest.approx(1550, rel=0.01)
    assert rows[1].p99_ms == rows[2].p99_ms == 0.0


def test_a_second_is_summarised_once_all_its_requests_are_answered() -> None:
    """Latencies of a finished second are let go as soon as a later second has begun."""
    recorder = Recorder(0.0)
    recorder.on_send(intended=0.5, at=0.5, lag=0.0, held_back=False)
    recorder.on_send(intended=1.5, at=1.5, lag=0.0, held_back=False)
    recorder.on_done(intended=0.5, sent=0.5, done=1.6, status=200, error=None)
    first = recorder._seconds[0]
    assert first.intended is None and first.actual is None
    assert first.saved is not None
    row = first.row(0, None)
    assert (row.p50_ms, row.p90_ms, row.p99_ms, row.max_ms) == (pytest.approx(1100, rel=0.01),) * 4
    assert recorder.recent() == (1, pytest.approx(1100, rel=0.01), pytest.approx(1100, rel=0.01))


def test_held_back_sends_and_scheduling_lag_are_recorded() -> None:
    """The lag histogram holds how late each send went; held-back sends are counted."""
    recorder = Recorder(0.0)
    recorder.on_send(intended=0.0, at=0.0, lag=0.0002, held_back=False)
    recorder.on_send(intended=0.4, at=0.5, lag=0.003, held_back=True)
    assert recorder.sent == 2
    assert recorder.held_back == 1
    assert recorder.scheduling_lag().max == pytest.approx(3, rel=0.01)


def test_spectrum_levels_halve_the_distance_to_100() -> None:
    """Percentile levels go 0, ..., 50, ..., 75, ..., 99.9 ... and end at 100, increasing."""
    levels = spectrum_levels()
    assert levels[0] == 0.0
    assert levels[-1] == 100.0
    assert 50.0 in levels and 75.0 in levels
    assert levels == sorted(set(levels))
    recorder = Recorder(0.0)
    for i in range(1, 1001):
        recorder.on_done(intended=0.0, sent=0.0, done=i / 1000, status=200, error=None)
    points = recorder.corrected.spectrum()
    assert points[-1][0] == 100.0
    assert points[-1][1] == pytest.approx(1000, rel=0.01)
    assert [value for _, value in points] == sorted(value for _, value in points)
