"""The pause fault: the whole server stalls, answering what arrived or was in flight only when the pause ends."""

from __future__ import annotations

import asyncio
import time

import pytest

from snapcrawl.simulator import Faults, Simulator
from snapcrawl.simulator.faults import Plan, parse_pause
from tests.simulator.helpers import Api


def test_pause_end_follows_the_schedule() -> None:
    """A moment inside a pause maps to that pause's end; touching pauses chain; nothing before the first request."""
    plan = Plan(Faults(pause=((1.0, 2.0), (3.0, 1.0), (10.0, 0.5))), seed=0)
    assert plan.pause_end(5.0) is None  # no request yet: no clock
    plan.arrive(100.0)
    assert [plan.pause_end(100.0 + at) for at in (0.5, 1.0, 2.9, 3.5, 4.0, 10.2, 11.0)] == [
        None,
        104.0,
        104.0,
        104.0,
        None,
        110.5,
        None,
    ]


def test_parse_pause_and_refuse_bad_ones() -> None:
    """``AT:FOR`` pairs parse; overlapping starts and negative durations are refused."""
    assert parse_pause("2:1.5,10:3") == ((2.0, 1.5), (10.0, 3.0))
    with pytest.raises(ValueError, match="pause"):
        parse_pause("2")
    with pytest.raises(ValueError, match="pause"):
        Faults(pause=((2.0, -1.0),))
    with pytest.raises(ValueError, match="pause"):
        Faults(pause=((2.0, 1.0), (1.0, 1.0)))


async def test_requests_arriving_during_a_pause_wait_for_its_end(api: Api, simulator: Simulator) -> None:
    """A pause from the first request holds that request and the ones arriving meanwhile until it ends."""
    simulator.faults = Faults(pause=((0.0, 0.6),))
    started = time.monotonic()
    replies = await asyncio.gather(*(api.get({"limit": "1"}) for _ in range(4)))
    assert [reply.status for reply in replies] == [200] * 4
    assert time.monotonic() - started >= 0.6
    assert simulator.stats.requests == 4


async def test_requests_in_flight_when_a_pause_starts_wait_for_its_end(api: Api, simulator: Simulator) -> None:
    """A request still in its latency when the pause begins is answered only after the pause."""
    simulator.faults = Faults(latency=0.3, pause=((0.1, 0.6),))
    started = time.monotonic()
    reply = await api.get({"limit": "1"})
    assert reply.status == 200
    assert time.monotonic() - started >= 0.7  # 0.1 + 0.6: the answer waited for the pause, not only the latency
