"""RateDiscovery's memory outlives a process (the Redis limiter keeps it in Redis), and hears batches of answers."""

from __future__ import annotations

import pytest

from snapcrawl.limits._policy import RateDiscovery


def _feed(policy: RateDiscovery, start: int, stop: int) -> list[float | None]:
    """Answers every 10 ms, a quarter of them throttled between 100 and 200; the rate after each."""
    rates = []
    for n in range(start, stop):
        now = 1000.0 + n * 0.01
        policy.answer(now - 0.004, now, throttled=100 <= n < 200 and n % 4 == 0)
        rates.append(policy.rate)
    return rates


def test_state_round_trip_keeps_the_decisions() -> None:
    """A policy restored from its state mid-way decides exactly as the one that went on."""
    kept = RateDiscovery(ceiling=99.0)
    kept.start(99.0, 1000.0)
    _feed(kept, 0, 150)
    restored = RateDiscovery.from_state(kept.to_state(), ceiling=99.0)
    assert restored.estimate == kept.estimate
    assert _feed(restored, 150, 500) == _feed(kept, 150, 500)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"estimate": "lots", "_window": 3}', '{"rate": [1]}'])
def test_a_state_that_is_not_one_gives_a_fresh_policy(text: str) -> None:
    """What Redis holds is not trusted: anything but a state written by to_state is a fresh policy."""
    policy = RateDiscovery.from_state(text, ceiling=50.0)
    assert (policy.rate, policy.estimate, policy.ceiling) == (None, None, 50.0)


def test_a_batch_of_one_is_one_answer() -> None:
    """answers(1 answer) is answer(): the local path and the batched Redis path are one policy."""
    one, batch = RateDiscovery(ceiling=99.0), RateDiscovery(ceiling=99.0)
    one.start(99.0, 1000.0)
    batch.start(99.0, 1000.0)
    for n in range(1, 300):  # the first answer's request was sent after the start (as answer() requires)
        now = 1000.0 + n * 0.01
        throttled = 100 <= n < 150 and n % 3 == 0
        one.answer(now - 0.004, now, throttled=throttled)
        batch.answers(int(not throttled), int(throttled), now, lag=0.004)
        assert batch.rate == one.rate
