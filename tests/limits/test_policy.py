"""RateDiscovery on its own: how one round of answers moves the rate. Pure: no clock, no event loop."""

from __future__ import annotations

import itertools

import pytest

from snapcrawl.limits import RateDiscovery


def _round(policy: RateDiscovery, *, start: float, rate: float, pattern: str) -> float:
    """Answer requests sent at ``rate`` from ``start`` (``pattern`` repeated: ``.`` ok, ``x`` throttled) until
    the round ends; return when it did."""
    now = start
    for mark in itertools.cycle(pattern):
        now += 1 / rate
        if policy.answer(now - 0.001, now, throttled=mark == "x"):
            return now
        assert now - start < 60, "the round never ended"
    raise AssertionError  # pragma: no cover - cycle() never ends


def _rate(policy: RateDiscovery) -> float:
    """The policy's rate, which these tests always expect to be set."""
    assert policy.rate is not None
    return policy.rate


def test_heavily_throttled_share_gives_the_quota() -> None:
    """Sending 800/s with three in four throttled means the server admits 200/s: the rate goes just under it."""
    policy = RateDiscovery()
    policy.start(800.0, 0.0)
    _round(policy, start=0.0, rate=800.0, pattern=".xxx")
    estimate = policy.estimate
    assert estimate == pytest.approx(200.0, rel=0.1)
    assert estimate is not None and policy.rate == pytest.approx(estimate * (1 - RateDiscovery.MARGIN))


def test_moderate_share_cuts_by_max_cut_at_most() -> None:
    """Half throttled (a burst-1 server admits half of a slightly fast stream) cuts by MAX_CUT, not by half."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    _round(policy, start=0.0, rate=100.0, pattern=".x")
    assert policy.estimate == pytest.approx(100.0 * (1 - RateDiscovery.MAX_CUT))


def test_all_throttled_halves() -> None:
    """A round with no success says only "too fast": the rate halves and the estimate stays unknown."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    _round(policy, start=0.0, rate=100.0, pattern="x")
    assert policy.rate == pytest.approx(50.0)
    assert policy.estimate is None


def test_lone_throttle_holds_then_a_second_cuts() -> None:
    """One throttle holds the rate; the next round with any throttle cuts it, even after a clean round."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    now = _round(policy, start=0.0, rate=100.0, pattern=".")
    probed = policy.rate
    assert probed is not None and probed > 100.0
    now = _round(policy, start=now, rate=probed, pattern="x" + "." * 30)
    assert policy.rate == probed and policy.throttled
    now = _round(policy, start=now, rate=probed, pattern=".")
    climbed = policy.rate
    assert climbed is not None
    _round(policy, start=now, rate=climbed, pattern="x" + "." * 30)
    assert _rate(policy) < climbed


def test_answers_to_earlier_rates_are_ignored() -> None:
    """Answers to requests granted before the rate last changed do not count towards the round."""
    policy = RateDiscovery()
    policy.start(100.0, 10.0)
    for i in range(100):
        assert not policy.answer(9.0, 10.0 + i / 100, throttled=True)
    assert policy.rate == 100.0


def test_probing_climbs_to_a_bounded_step_above_the_estimate() -> None:
    """Clean rounds climb to PROBE_LIMIT above the estimate and wait there before raising it."""
    policy = RateDiscovery()
    policy.start(800.0, 0.0)
    now = _round(policy, start=0.0, rate=800.0, pattern=".xxx")
    estimate = policy.estimate
    assert estimate is not None
    for _ in range(6):
        rate = policy.rate
        assert rate is not None
        now = _round(policy, start=now, rate=rate, pattern=".")
    assert policy.rate == pytest.approx(estimate * (1 + RateDiscovery.PROBE_LIMIT))
    assert policy.estimate == estimate


def test_clean_at_the_top_raises_the_estimate() -> None:
    """Clean for RISE_SECONDS at the top of the probe, the quota must have risen: the estimate goes up."""
    policy = RateDiscovery()
    policy.start(800.0, 0.0)
    now = _round(policy, start=0.0, rate=800.0, pattern=".xxx")
    estimate = policy.estimate
    assert estimate is not None
    while policy.estimate == estimate:
        rate = policy.rate
        assert rate is not None
        now = _round(policy, start=now, rate=rate, pattern=".")
        assert now < 10.0
    assert policy.estimate is not None and policy.estimate > estimate


def test_ceiling_bounds_the_rate() -> None:
    """A told or announced ceiling is never exceeded, however clean the rounds."""
    policy = RateDiscovery(ceiling=50.0)
    policy.start(None, 0.0)
    assert policy.rate == 50.0
    now = 0.0
    for _ in range(10):
        now = _round(policy, start=now, rate=50.0, pattern=".")
    assert policy.rate == 50.0
