"""The maintenance fault: for a window, every request is answered 503 with a Retry-After naming the window's end."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from snapcrawl.cli import build_parser
from snapcrawl.cli.simulate import faults_from_args
from snapcrawl.simulator import Faults, Simulator
from snapcrawl.simulator.faults import Plan, parse_maintenance
from tests.simulator.helpers import Api


def test_maintenance_end_follows_the_schedule() -> None:
    """A moment inside a window maps to its end; touching windows chain; nothing before the first request."""
    plan = Plan(Faults(maintenance=((0.0, 2.0), (2.0, 1.0), (10.0, 0.5))), seed=0)
    assert plan.maintenance_end(5.0) is None  # no request yet: no clock
    plan.arrive(100.0)
    assert [plan.maintenance_end(100.0 + at) for at in (0.0, 1.9, 2.5, 3.0, 10.2, 11.0)] == [
        103.0,
        103.0,
        103.0,
        None,
        110.5,
        None,
    ]
    assert plan.pause_end(100.5) is None  # a maintenance window is not a pause


def test_parse_maintenance_and_refuse_bad_ones() -> None:
    """``AT:FOR`` pairs parse, the CLI flag accumulates them, and bad windows are refused by name."""
    assert parse_maintenance("2:1.5,10:3") == ((2.0, 1.5), (10.0, 3.0))
    args = build_parser().parse_args(["simulate", "--maintenance", "0:4", "--maintenance", "30:5,60:1"])
    assert faults_from_args(args).maintenance == ((0.0, 4.0), (30.0, 5.0), (60.0, 1.0))
    with pytest.raises(ValueError, match="maintenance"):
        parse_maintenance("2")
    with pytest.raises(ValueError, match="maintenance"):
        Faults(maintenance=((2.0, -1.0),))
    with pytest.raises(ValueError, match="maintenance"):
        Faults(maintenance=((2.0, 1.0), (1.0, 1.0)))


async def test_every_request_in_the_window_is_a_503_with_retry_after(api: Api, simulator: Simulator) -> None:
    """During the window: 503 and Retry-After (seconds to its end, rounded up); after it, pages again."""
    simulator.faults = Faults(maintenance=((0.0, 1.2),))
    started = time.monotonic()
    replies = await asyncio.gather(*(api.get({"limit": "1"}) for _ in range(3)))
    assert [reply.status for reply in replies] == [503] * 3
    assert {reply.headers["Retry-After"] for reply in replies} == {"2"}
    assert b"maintenance" in replies[0].body
    await asyncio.sleep(max(0.0, 1.3 - (time.monotonic() - started)))
    assert (await api.get({"limit": "1"})).status == 200


async def test_an_http_date_retry_after_and_one_never_left_out(api: Api, simulator: Simulator) -> None:
    """``retry_after`` picks the form; ``none`` (which leaves 429s without one) still announces the window's end."""
    simulator.faults = Faults(maintenance=((0.0, 30.0),), retry_after="http-date")
    reply = await api.get({"limit": "1"})
    assert reply.status == 503
    when = email.utils.parsedate_to_datetime(reply.headers["Retry-After"]).timestamp()
    assert 25 <= when - time.time() <= 32
    simulator.faults = Faults(maintenance=((0.0, 30.0),), retry_after="none")
    reply = await api.get({"limit": "1"})
    assert reply.status == 503
    assert reply.headers["Retry-After"] in {"29", "30"}
