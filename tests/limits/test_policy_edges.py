"""RateDiscovery's edges that the scenario tests pass through without pinning: the floor under the rate, the
first rounds, Redis batches, the climb back after a cut and the answer meter. Pure: no clock, no event loop.

Each test here killed a mutant that survived ``python -m benchmarks.mutation --only policy``.
"""

from __future__ import annotations

import pytest

from snapcrawl.limits._policy import AnswerMeter, RateDiscovery


def _rate(policy: RateDiscovery) -> float:
    """The policy's rate, which these tests expect to be set."""
    assert policy.rate is not None
    return policy.rate


def test_a_rate_told_below_the_floor_is_raised_to_it() -> None:
    """A tiny or negative rate (a bad --rate, a state from Redis) never stalls the crawl: 0.5/s is the floor."""
    policy = RateDiscovery()
    policy.start(0.1, 0.0)
    assert policy.rate == 0.5
    policy.start(-3.0, 0.0)
    assert policy.rate == 0.5


def test_an_all_throttled_round_at_no_known_rate_halves_what_came_back() -> None:
    """Unlimited (rate ``None``) and every answer throttled: halve the rate the answers came back at."""
    policy = RateDiscovery()
    policy.start(None, 0.0)
    now = 0.0
    while not policy.answer(now, now + 0.01, throttled=True):
        now += 0.01
        assert now < 5
    assert policy.rate == pytest.approx(50.0, rel=0.1)


def test_two_answers_are_not_a_first_round() -> None:
    """A clean start round needs three answers: two give one interval, too little to double the rate on."""
    policy = RateDiscovery()
    policy.start(10.0, 0.0)
    assert not policy.answer(0.049, 0.05, throttled=False)
    assert not policy.answer(0.199, 0.2, throttled=False)
    assert policy.rate == 10.0
    assert policy.answer(0.299, 0.3, throttled=False)
    assert _rate(policy) > 10.0


def test_a_single_answer_never_ends_a_round() -> None:
    """One answer has no rate, whatever ``first`` a batch claims."""
    policy = RateDiscovery()
    policy.start(10.0, 0.0)
    assert not policy.answers(1, 0, 2.0, first=0.0)
    assert policy.rate == 10.0


def test_a_batch_with_no_or_negative_counts_is_ignored() -> None:
    """A report of no answers, or a corrupt negative count, changes nothing: the next round is a fresh one."""
    policy = RateDiscovery()
    policy.start(10.0, 0.0)
    assert not policy.answers(0, 0, 0.1)
    assert not policy.answers(-5, 0, 0.1)
    assert policy.answers(3, 0, 0.3, first=0.1)  # a whole start round, as on a fresh policy
    assert _rate(policy) > 10.0


def test_a_batch_holding_the_first_throttles_ends_its_round_at_once() -> None:
    """The Redis limiter reports in batches: one that brings the first throttles and a round's worth of answers
    (20 of 30 throttled over 0.4 s) is judged now, not held for the next batch."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    assert policy.answers(10, 20, 0.5, first=0.1, lag=0.01)
    assert _rate(policy) < 50.0


def test_the_climb_back_after_a_cut_stops_at_the_rate_before_it() -> None:
    """After a moderate cut from 100/s, clean rounds close 30 % of the gap, at least 2 % of the estimate a round,
    and stop just under the rate before the cut, never above it."""
    policy = RateDiscovery()
    policy.estimate = 100.0
    policy._before_cut = 100.0
    assert policy._probe(50.0, 100.0, 10.0) == pytest.approx(50.0 + 0.3 * 48.0)
    assert policy._probe(97.5, 100.0, 10.0) == pytest.approx(98.0)
    assert policy._probe(96.0, 100.0, 10.0) == pytest.approx(98.0)  # 30 % of 2 is less than 2 % of 100


def test_answers_exactly_fifteen_percent_slow_are_still_paced() -> None:
    """Answers coming back 15 % under the rate are latency jitter: the start round doubles the rate it sent at."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    policy._ok = 20
    assert policy._conclude(1.0, 85.0)
    assert policy.rate == 200.0


def test_the_meter_measures_from_its_oldest_sample() -> None:
    """The rate is over the horizon, not since the last mark: 40 answers in 2 s is 20/s, however marked."""
    meter = AnswerMeter()
    meter.mark(0.0, 0)
    meter.mark(1.0, 10)
    assert meter.rate(2.0, 40) == pytest.approx(20.0)


def _until_round_ends(policy: RateDiscovery, now: float, rate: float, pattern: str) -> float:
    """Answers to requests sent at ``rate`` (``pattern``: ``.`` ok, ``x`` throttled, repeated) until a round
    ends; when it did."""
    index = 0
    while True:
        now += 1 / rate
        if policy.answer(now - 0.001, now, throttled=pattern[index % len(pattern)] == "x"):
            return now
        index += 1
        assert index < 10_000, "the round never ended"


def test_a_heavily_throttled_round_is_judged_on_its_own_not_diluted_by_clean_ones() -> None:
    """Half of a round throttled right after a clean one: the half measures the quota (cut to about 50/s), not
    the share over the last second with the clean round counted in (which would cut to about 75/s)."""
    policy = RateDiscovery(ceiling=100.0)
    policy.start(100.0, 0.0)
    now = _until_round_ends(policy, 0.0, 100.0, ".")
    assert policy.rate == 100.0
    _until_round_ends(policy, now, 100.0, ".x")
    assert _rate(policy) < 55.0


def test_the_first_probe_round_after_a_cut_does_not_raise_the_estimate() -> None:
    """After a cut, the estimate rises only once the probe has sent 2 requests beyond it (what the server's
    bucket could have saved up): one clean 0.2 s round 3 % over 200/s spends about 1.2, so no rise yet."""
    policy = RateDiscovery()
    policy.start(800.0, 0.0)
    now = _until_round_ends(policy, 0.0, 800.0, ".xxx")
    estimate = policy.estimate
    assert estimate is not None
    policy._held_since = -float("inf")  # the hold is over
    top = estimate * 1.03
    policy.start(top, now)
    _until_round_ends(policy, now, top, ".")
    assert policy.estimate == estimate
