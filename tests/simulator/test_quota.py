"""The quota: a schedule that steps the rate down and up, per-second server counts, and rate-limit headers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest

from snapcrawl.simulator import STATS_PATH, Faults, Simulator
from snapcrawl.simulator.faults import Plan, parse_quota_schedule
from snapcrawl.simulator.server import ratelimit_headers
from tests.simulator.helpers import Api

SCHEDULE = ((0.0, 200.0), (10.0, 100.0), (20.0, 400.0))


def test_schedule_steps_the_quota_down_and_up() -> None:
    """The quota in force follows the schedule, counted from the plan's first request."""
    plan = Plan(Faults(quota_schedule=SCHEDULE), seed=0)
    assert plan.quota(50.0) == 200.0  # before the first request: its first step
    plan.arrive(1000.0)
    assert [plan.quota(1000.0 + at) for at in (0, 9.99, 10, 19.5, 20, 500)] == [200, 200, 100, 100, 400, 400]


def test_rate_limit_holds_before_the_first_step() -> None:
    """Before a schedule's first step, ``rate_limit`` (or no quota at all) is in force."""
    limited = Plan(Faults(rate_limit=7, quota_schedule=((5.0, 3.0),)), seed=0)
    unlimited = Plan(Faults(quota_schedule=((5.0, 3.0),)), seed=0)
    for plan in (limited, unlimited):
        plan.arrive(0.0)
    assert [limited.quota(1.0), limited.quota(6.0)] == [7.0, 3.0]
    assert [unlimited.quota(1.0), unlimited.quota(6.0)] == [None, 3.0]
    assert unlimited.throttle(1.0) == (None, 0.0, 0.0)


def test_tokens_before_a_step_are_earned_at_the_old_rate() -> None:
    """A bucket emptied before a step down refills at the old rate up to the step, then at the new one."""
    plan = Plan(Faults(rate_limit=100, rate_burst=1, quota_schedule=((1.0, 0.01),)), seed=0)
    plan.arrive(0.0)
    assert plan.throttle(0.0)[1] == 0.0
    assert plan.throttle(1.5)[1] == 0.0  # earned at 100/s before the step
    rate, wait, _ = plan.throttle(1.6)
    assert rate == 0.01
    assert wait == pytest.approx((1 - 0.001) / 0.01)


def test_parse_quota_schedule() -> None:
    """``AT:RATE,...`` parses to steps; anything else is a ValueError naming the option."""
    assert parse_quota_schedule("0:200,10:100, 20:400") == SCHEDULE
    for bad in ("0:200,10", "x:1", "0:200;10:100"):
        with pytest.raises(ValueError, match="quota schedule"):
            parse_quota_schedule(bad)


@pytest.mark.parametrize(
    "schedule",
    [((5.0, 1.0), (5.0, 2.0)), ((5.0, 1.0), (2.0, 2.0)), ((0.0, 0.0),), ((-1.0, 1.0),), ((0.0, float("inf")),)],
    ids=["repeated-time", "decreasing-time", "zero-rate", "negative-time", "infinite-rate"],
)
def test_invalid_schedules_are_refused(schedule: Any) -> None:
    """A schedule must step forward in time to positive rates."""
    with pytest.raises(ValueError, match="quota_schedule"):
        Faults(quota_schedule=schedule)


async def test_schedule_and_per_second_counts(api: Api, simulator: Simulator) -> None:
    """The server counts arrivals, 200s and 429s per second with the quota then in force, also over HTTP."""
    simulator.faults = Faults(rate_limit=1000, rate_burst=1, quota_schedule=((1.0, 0.01),))
    assert (await api.get({"limit": "1"})).status == 200
    await asyncio.sleep(1.1)  # into the second step: one token, earned at 1000/s, then one per 100 s
    assert [(await api.get({"limit": "1"})).status for _ in range(3)] == [200, 429, 429]
    rows = simulator.stats.seconds
    assert (rows[0].second, rows[0].requests, rows[0].ok, rows[0].throttled, rows[0].quota) == (0, 1, 1, 0, 1000)
    assert all(row.quota == 0.01 for row in rows[1:])
    assert [row.second for row in rows] == list(range(len(rows)))  # quiet seconds are rows of zeros
    assert sum(row.requests for row in rows) == 4
    assert (sum(row.ok for row in rows), sum(row.throttled for row in rows)) == (2, 2)
    async with aiohttp.ClientSession() as session, session.get(simulator.url + STATS_PATH) as response:
        data = await response.json()
    assert data["per_second"][0] == {"second": 0, "requests": 1, "ok": 1, "throttled": 0, "quota": 1000}
    assert data["per_second"] == [row.as_dict() for row in rows]


async def test_quota_decides_on_arrival(api: Api, simulator: Simulator) -> None:
    """As a gateway does, the bucket judges a request when it arrives, before the latency: a quota cut that comes
    into force while requests wait out their latency does not throttle them, and a 429 takes the latency too.
    (Decided after the latency, the second request would meet the cut and an empty bucket.)"""
    simulator.faults = Faults(rate_limit=1000, rate_burst=1, quota_schedule=((0.3, 0.01),), latency=0.6)
    started = asyncio.get_running_loop().time()
    first = asyncio.create_task(api.get({"limit": "1"}))
    await asyncio.sleep(0.02)  # arrives at 1000/s, long before the cut: a token is back already
    second = await api.get({"limit": "1"})
    assert [(await first).status, second.status] == [200, 200]
    third = await api.get({"limit": "1"})  # after the cut, it takes the token earned at 1000/s before it
    fourth = await api.get({"limit": "1"})  # and the bucket is empty at 0.01/s
    assert [third.status, fourth.status] == [200, 429]
    assert asyncio.get_running_loop().time() - started >= 3 * 0.6  # the 429 waited its latency as well


async def test_per_second_counts_without_a_quota(api: Api, simulator: Simulator) -> None:
    """Without a quota the rows still count requests and answers, with a null quota."""
    await api.get({"limit": "1"})
    (row,) = simulator.stats.seconds
    assert row.as_dict() == {"second": 0, "requests": 1, "ok": 1, "throttled": 0, "quota": None}


# -- rate-limit headers ----------------------------------------------------------------------------------------


def test_ratelimit_header_formats() -> None:
    """IETF draft and X-style headers: quota per one-second window, whole tokens left, whole seconds to reset."""
    assert ratelimit_headers("both", 50, 12.7) == {
        "RateLimit-Policy": '"default";q=50;w=1',
        "RateLimit": '"default";r=12;t=0',
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "12",
        "X-RateLimit-Reset": "0",
    }
    assert ratelimit_headers("ietf", 2, 0.2) == {
        "RateLimit-Policy": '"default";q=2;w=1',
        "RateLimit": '"default";r=0;t=1',
    }
    assert ratelimit_headers("x", 0.25, 0.5) == {
        "X-RateLimit-Limit": "0.25",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2",
    }
    assert ratelimit_headers("ietf", 0.25, 0.5)["RateLimit-Policy"] == '"default";q=1;w=4'  # below 1/s: a longer window


async def test_ratelimit_headers_on_every_answer(api: Api, simulator: Simulator) -> None:
    """With a quota and ``ratelimit_headers='both'``, 200s, 429s and errors all carry both header styles."""
    simulator.faults = Faults(rate_limit=0.1, rate_burst=2, ratelimit_headers="both")
    first, second, third = [await api.get({"limit": "1"}) for _ in range(3)]
    unknown = await api.get(path="/nowhere")
    assert [reply.status for reply in (first, second, third, unknown)] == [200, 200, 429, 429]
    assert first.headers["RateLimit-Policy"] == '"default";q=1;w=10'
    assert first.headers["RateLimit"] == '"default";r=1;t=0'
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("0.1", "1")
    assert first.headers["X-RateLimit-Reset"] == "0"
    reset = re.fullmatch(r'"default";r=0;t=(\d+)', third.headers["RateLimit"])
    assert reset is not None
    assert int(reset.group(1)) == int(third.headers["Retry-After"]) == int(third.headers["X-RateLimit-Reset"])
    assert 9 <= int(reset.group(1)) <= 10
    assert second.headers["RateLimit"].startswith('"default";r=0;t=')


async def test_ratelimit_headers_need_a_quota_and_the_option(api: Api, simulator: Simulator) -> None:
    """No quota or the default style 'none': no rate-limit headers; 'ietf' and 'x' send only their own."""
    simulator.faults = Faults(ratelimit_headers="both")
    plain = await api.get({"limit": "1"})
    simulator.faults = Faults(rate_limit=100)
    default = await api.get({"limit": "1"})
    simulator.faults = Faults(rate_limit=100, ratelimit_headers="ietf")
    ietf = await api.get({"limit": "1"})
    simulator.faults = Faults(rate_limit=100, ratelimit_headers="x")
    x_style = await api.get({"limit": "1"})
    for reply in (plain, default):
        assert not {"RateLimit", "RateLimit-Policy", "X-RateLimit-Limit"} & set(reply.headers)
    assert "RateLimit" in ietf.headers and "X-RateLimit-Limit" not in ietf.headers
    assert "X-RateLimit-Remaining" in x_style.headers and "RateLimit" not in x_style.headers


def test_unknown_ratelimit_header_style_is_refused() -> None:
    """Only none, ietf, x and both are styles."""
    with pytest.raises(ValueError, match="ratelimit_headers"):
        Faults(ratelimit_headers="draft")  # type: ignore[arg-type]
