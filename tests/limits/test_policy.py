"""RateDiscovery on its own: how one round of answers moves the rate. Pure: no clock, no event loop.

The bounds are literal figures, not the policy's own constants, so that a constant changed by mistake (a probe
cap ten times too high, a margin ten times too wide) fails here by far.
"""

from __future__ import annotations

import itertools

import pytest

from snapcrawl.limits._policy import RateDiscovery


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


def _clean(policy: RateDiscovery, now: float, *, rounds: int) -> float:
    """``rounds`` clean rounds at whatever rate the policy asks for; when the last ended."""
    for _ in range(rounds):
        now = _round(policy, start=now, rate=_rate(policy), pattern=".")
    return now


def _measured(quota: float = 200.0) -> tuple[RateDiscovery, float]:
    """A policy that measured ``quota`` from a round sent at four times it; the policy and when that round ended."""
    policy = RateDiscovery()
    policy.start(4 * quota, 0.0)
    now = _round(policy, start=0.0, rate=4 * quota, pattern=".xxx")
    return policy, now


def test_heavily_throttled_share_gives_the_quota() -> None:
    """Sending 800/s with three in four throttled means the server admits 200/s: the rate goes just under it."""
    policy, _ = _measured(200.0)
    assert policy.estimate == pytest.approx(200.0, rel=0.1)
    assert 0.95 * 200.0 <= _rate(policy) < 200.0


def test_moderate_share_cuts_by_half_at_most() -> None:
    """Half throttled (a burst-1 server admits half of a slightly fast stream) cuts by half at most."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    _round(policy, start=0.0, rate=100.0, pattern=".x")
    assert policy.estimate is not None and policy.estimate >= 50.0


def test_all_throttled_halves() -> None:
    """A round with no success says only "too fast": the rate halves and the estimate stays unknown."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    _round(policy, start=0.0, rate=100.0, pattern="x")
    assert policy.rate == pytest.approx(50.0)
    assert policy.estimate is None


def _thrown_at_80() -> tuple[RateDiscovery, float]:
    """A policy whose start climbed 10, 20, 40 clean and was throttled at 80; it and when the throttle came."""
    policy = RateDiscovery()
    policy.start(10.0, 0.0)
    now = _clean(policy, 0.0, rounds=3)
    assert policy.rate == pytest.approx(80.0)
    assert policy.estimate is None
    assert policy.answer(now, now + 0.02, throttled=True)
    return policy, now + 0.02


def test_the_start_doubles_until_throttled_and_the_level_before_the_last_clean_one_stands() -> None:
    """With nothing known, each clean round doubles the rate; the first throttle above sets the estimate at once,
    without waiting for the round to end, to the level before the last clean one: a start round is short, and
    the server's burst may have kept the last one clean."""
    policy, _ = _thrown_at_80()
    assert policy.estimate == pytest.approx(20.0)
    assert 0.95 * 20.0 <= _rate(policy) < 20.0


def _gauge(policy: RateDiscovery, now: float, pattern: str) -> bool:
    """Answers to requests sent at 80/s after the first throttle (``pattern``: ``.`` ok, ``x`` throttled), then
    the first answer to one sent at the new rate; whether that one changed the rate."""
    sent = now - 0.02
    for mark in pattern:
        sent += 0.02 / (len(pattern) + 1)
        assert not policy.answer(sent, now, throttled=mark == "x")
        now += 0.001
    return policy.answer(now, now + 0.02, throttled=False)


def test_the_answers_still_coming_at_the_throttled_rate_gauge_the_quota() -> None:
    """After the start's first throttle the server's bucket is dry, so the share of the answers still to come at
    the throttled rate that it admitted is its rate: 6 in 8 at 80/s is 60/s, well above the 20 the doubling
    proved. The estimate takes it, held under, at once."""
    policy, now = _thrown_at_80()
    assert _gauge(policy, now, "..x.x...")
    assert policy.estimate == pytest.approx(60.0)
    assert 0.95 * 60.0 <= _rate(policy) < 60.0


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("x..x.x.x", id="within-two-answers-of-the-estimate"),
        pytest.param("...", id="too-few-answers"),
        pytest.param("", id="none-at-all"),
    ],
)
def test_a_gauge_within_its_noise_leaves_the_estimate(pattern: str) -> None:
    """A gauge counts only when it is clearly above the estimate (two answers' worth) over enough answers."""
    policy, now = _thrown_at_80()
    _gauge(policy, now, pattern)
    assert policy.estimate == pytest.approx(20.0)


def test_a_client_slower_than_the_start_rate_is_client_bound() -> None:
    """Answers coming back at a quarter of the rate: the client, not the quota, sets the pace. The climb stops,
    and the policy says so (the local limiter then stops pacing)."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    now = 0.0
    while True:
        now += 0.04
        if policy.answer(now - 0.001, now, throttled=False):
            break
    assert policy.client_bound
    assert policy.rate == pytest.approx(100.0)
    fast = RateDiscovery()
    fast.start(100.0, 0.0)
    _clean(fast, 0.0, rounds=1)
    assert not fast.client_bound


def test_the_first_throttle_restarts_the_round() -> None:
    """A round judges its share from its first throttle on: the clean answers before it do not dilute it."""
    policy, now = _measured(200.0)
    rate = _rate(policy)
    now = _round(policy, start=now, rate=rate, pattern="." * 15 + "x" + ".x" * 100)
    assert policy.estimate == pytest.approx(rate / 2, rel=0.1)


def test_a_lone_throttle_under_the_estimate_is_noise() -> None:
    """Holding under the estimate, one throttle in a round (jitter) leaves the rate and the estimate alone."""
    policy, now = _measured(200.0)
    rate, estimate = _rate(policy), policy.estimate
    _round(policy, start=now, rate=rate, pattern="x" + "." * 60)
    assert (policy.rate, policy.estimate) == (rate, estimate)
    assert policy.throttled


def test_a_clump_of_throttles_then_clean_answers_is_a_stall() -> None:
    """Throttles bunched at the start of a round that then runs clean (a stall let requests go together) hold
    the rate; the same share spread through the round cuts it."""
    clumped, now = _measured(200.0)
    rate = _rate(clumped)
    _round(clumped, start=now, rate=rate, pattern="xxx" + "." * 57)
    assert clumped.rate == rate
    spread, now = _measured(200.0)
    _round(spread, start=now, rate=rate, pattern="x" + "." * 19)
    assert _rate(spread) < rate


def test_throttles_that_go_on_end_the_round_early() -> None:
    """A quota cut throttles round after round: the round ends as soon as its throttles have gone on for a while,
    long before ROUND_ANSWERS answers, and the rate follows the share."""
    policy, now = _measured(200.0)
    rate = _rate(policy)
    ended = _round(policy, start=now, rate=rate, pattern=".x")
    assert ended - now < 0.1
    assert _rate(policy) < 0.6 * rate


def test_the_estimate_holds_then_a_probe_goes_a_few_percent_above_it() -> None:
    """After a measure the rate holds just under the estimate for about a second, then probes at most 5 % above
    it: a probe that found nothing costs a throttle or two, not a share of every request."""
    policy, now = _measured(200.0)
    estimate = policy.estimate
    assert estimate is not None
    hold = _rate(policy)
    rates = []
    while now < 1.5:
        now = _round(policy, start=now, rate=_rate(policy), pattern=".")
        rates.append(_rate(policy))
    assert rates[0] == hold  # held first
    assert max(rates) > estimate  # then probed
    assert max(rates) <= 1.05 * estimate
    assert policy.estimate == estimate


def test_a_throttle_during_a_probe_ends_it_under_the_estimate() -> None:
    """The first throttle to a request sent above the estimate ends the round at once: the quota is where the
    estimate said (refined by at most a few per cent: what was sent since the last throttle is what the server
    admitted), and the rate goes back under it."""
    policy, now = _measured(200.0)
    estimate = policy.estimate
    assert estimate is not None
    while _rate(policy) <= estimate:
        now = _round(policy, start=now, rate=_rate(policy), pattern=".")
    assert policy.answer(now, now + 0.01, throttled=True)
    assert policy.estimate is not None
    assert _rate(policy) < policy.estimate
    assert policy.estimate == pytest.approx(estimate, rel=0.05)


def test_a_probe_refines_the_estimate_from_what_was_sent_since_the_last_throttle() -> None:
    """An estimate 1.5 % over the quota: the hold is under the quota, the probe over it, and the server's bucket
    (empty at the last throttle) runs dry once the probe has spent what the hold saved up. The throttle that ends
    the probe moves the estimate to what was sent since the last throttle, which is what the server admitted:
    within 0.5 % of the quota (before, the estimate stayed where it was, and so did the hold's margin)."""
    quota = 200.0
    policy = RateDiscovery()
    policy.estimate = 1.015 * quota
    now, tokens = 0.0, 0.0
    policy.start(policy.estimate * 0.98, now)
    for _ in range(3):  # the first throttle only empties the bucket: what came before it says nothing
        while True:
            rate = _rate(policy)
            now += 1 / rate
            tokens += quota / rate - 1
            if tokens < 0:
                assert policy.answer(now - 0.001, now, throttled=True)
                tokens = 0.0
                break
            policy.answer(now - 0.001, now, throttled=False)
            assert now < 30, "the probe never reached the quota"
    assert policy.estimate == pytest.approx(quota, rel=0.005)


def test_clean_probes_raise_the_estimate_quickly() -> None:
    """When the probe stays clean beyond what the hold could have saved up, the quota rose: the estimate rises,
    faster with every clean round, and doubles within 3.5 seconds."""
    policy, now = _measured(100.0)
    estimate = policy.estimate
    assert estimate is not None
    now = _clean(policy, now, rounds=5)
    assert policy.estimate == estimate  # the hold and the first probe rounds prove nothing yet
    while policy.estimate < 2 * estimate:
        now = _round(policy, start=now, rate=_rate(policy), pattern=".")
        assert now < 3.5


def test_answers_to_earlier_rates_are_ignored() -> None:
    """Answers to requests granted before the rate last changed do not count towards the round."""
    policy = RateDiscovery()
    policy.start(100.0, 10.0)
    for i in range(100):
        assert not policy.answer(9.0, 10.0 + i / 100, throttled=True)
    assert policy.rate == 100.0


def test_ceiling_bounds_the_rate() -> None:
    """A told or announced ceiling is never exceeded, however clean the rounds."""
    policy = RateDiscovery(ceiling=50.0)
    policy.start(None, 0.0)
    assert policy.rate == 50.0
    now = 0.0
    for _ in range(10):
        now = _round(policy, start=now, rate=50.0, pattern=".")
    assert policy.rate == 50.0
