"""The find-max search, driven by a pure oracle instead of a server."""

from __future__ import annotations

import pytest

from snapcrawl.bench._search import MIN_RATE, RateSearch


def _search(limit: float, *, start: float = 50.0, max_rate: float = 10_000.0) -> tuple[RateSearch, list[float]]:
    search = RateSearch(start=start, max_rate=max_rate)
    tried: list[float] = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, passed=rate <= limit)
        assert len(tried) < 100
    return search, tried


@pytest.mark.parametrize("limit", [3.0, 37.0, 300.0, 1234.5, 9000.0])
def test_finds_the_limit_within_its_precision(limit: float) -> None:
    """The answer passed, and the limit is no more than the stated precision above it."""
    search, tried = _search(limit)
    assert search.result <= limit
    assert search.bound is not None
    assert search.bound <= search.precision
    assert limit <= search.result * (1 + search.bound)
    assert len(tried) <= 20


def test_ramps_by_doubling_then_bisects() -> None:
    """From 50: 50, 100, 200, 400 (fails), then the midpoint 300."""
    _, tried = _search(310.0)
    assert tried[:5] == [50.0, 100.0, 200.0, 400.0, 300.0]


def test_stops_at_max_rate_when_everything_passes() -> None:
    """An endpoint faster than max_rate is reported as max_rate, with no bound."""
    search, tried = _search(1e9, max_rate=500.0)
    assert tried[-1] == 500.0
    assert search.result == 500.0
    assert search.bound is None


def test_halves_down_when_the_first_step_fails() -> None:
    """A limit below the start is found by halving, then bisecting."""
    search, tried = _search(7.0)
    assert tried[:4] == [50.0, 25.0, 12.5, 6.25]
    assert 6.25 <= search.result <= 7.0


def test_nothing_sustained_gives_zero() -> None:
    """If even the lowest rate fails, the result is 0."""
    search, tried = _search(0.0)
    assert tried[-1] == MIN_RATE
    assert search.result == 0.0
