"""RateDiscovery before any estimate: how multiplicative probing grows its step."""

from __future__ import annotations

import itertools

from snapcrawl.limits import RateDiscovery

from .test_policy import _rate, _round


def test_probing_without_an_estimate_doubles_its_step_up_to_max_step() -> None:
    """Clean rounds with nothing measured yet raise the rate by 5 %, 10 %, 20 %, then 25 % a round."""
    policy = RateDiscovery()
    policy.start(100.0, 0.0)
    now, rates = 0.0, [100.0]
    for _ in range(5):
        now = _round(policy, start=now, rate=rates[-1], pattern=".")
        rates.append(_rate(policy))
    assert policy.estimate is None
    steps = [round(after / before - 1, 6) for before, after in itertools.pairwise(rates)]
    assert steps == [0.05, 0.1, 0.2, 0.25, 0.25]
