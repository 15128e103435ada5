"""Rate-limit headers: both families, several policies, epoch resets, and garbage that must be ignored."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from snapcrawl.limits import Quota
from snapcrawl.limits._headers import read_quota

NOW = 1_800_000_000.0


def test_ietf_policy_and_state() -> None:
    """RateLimit-Policy gives the rate (q per w seconds), RateLimit what is left and when it resets."""
    headers = {"RateLimit-Policy": '"default";q=600;w=60', "RateLimit": '"default";r=42;t=7'}
    assert read_quota(headers, wall_now=NOW) == Quota(rate=10.0, remaining=42.0, reset=7.0)


def test_x_ratelimit_with_delta_reset() -> None:
    """X-RateLimit-Limit is taken per second; a small reset is seconds from now."""
    headers = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1"}
    assert read_quota(headers, wall_now=NOW) == Quota(rate=200.0, remaining=3.0, reset=1.0)


def test_x_ratelimit_with_epoch_reset() -> None:
    """A reset that is a Unix time becomes seconds from now (never negative)."""
    headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)}
    assert read_quota(headers, wall_now=NOW) == Quota(rate=50.0, remaining=0.0, reset=30.0)
    stale = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)}
    assert read_quota(stale, wall_now=NOW) == Quota(remaining=0.0, reset=0.0)


def test_both_families_tightest_wins() -> None:
    """With both families, the lower rate and the lower remaining count govern."""
    headers = {
        "RateLimit-Policy": '"default";q=100;w=1',
        "RateLimit": '"default";r=80;t=1',
        "X-RateLimit-Limit": "120",
        "X-RateLimit-Remaining": "5",
        "X-RateLimit-Reset": "2",
    }
    assert read_quota(headers, wall_now=NOW) == Quota(rate=100.0, remaining=5.0, reset=2.0)


def test_several_policies_and_quoted_names() -> None:
    """Several policies, names with commas and semicolons inside quotes: the tightest rate is taken."""
    headers = {
        "RateLimit-Policy": '"burst, fast;x";q=100;w=1, "day";q=86400;w=86400, hourly;q=7200;w=3600',
        "RateLimit": '"burst, fast;x";r=7;t=1, "day";r=5000;t=3600',
    }
    assert read_quota(headers, wall_now=NOW) == Quota(rate=1.0, remaining=7.0, reset=1.0)


def test_names_are_case_insensitive() -> None:
    """Header names match whatever their case, in a plain dict as in aiohttp's multidict."""
    plain = {"ratelimit-policy": '"p";q=5;w=1'}
    multi = CIMultiDict({"RATELIMIT-POLICY": '"p";q=5;w=1'})
    assert read_quota(plain, wall_now=NOW) == read_quota(multi, wall_now=NOW) == Quota(rate=5.0)


def test_missing_parameters() -> None:
    """A policy without a window is per second; one without a quota says nothing about the rate."""
    assert read_quota({"RateLimit-Policy": '"p";q=30'}, wall_now=NOW) == Quota(rate=30.0)
    assert read_quota({"RateLimit-Policy": '"p";w=10'}, wall_now=NOW) is None
    assert read_quota({"RateLimit": '"p";t=3'}, wall_now=NOW) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json"},
        {"RateLimit-Policy": ""},
        {"RateLimit-Policy": "garbage"},
        {"RateLimit-Policy": '"p";q=abc;w=1'},
        {"RateLimit-Policy": '"p";q=10;w=0'},
        {"RateLimit-Policy": '"p";q=-5;w=1'},
        {"RateLimit-Policy": '"p";q=nan;w=1'},
        {"RateLimit-Policy": '"p";q=inf;w=1'},
        {"RateLimit-Policy": '"unterminated;q=10;w=1'},
        {"RateLimit": ";;;,,,===;"},
        {"X-RateLimit-Limit": "lots"},
        {"X-RateLimit-Limit": "", "X-RateLimit-Remaining": "-1"},
        {"X-RateLimit-Limit": "1e400"},
    ],
)
def test_garbage_is_ignored(headers: dict[str, str]) -> None:
    """Unreadable values announce nothing and never raise."""
    assert read_quota(headers, wall_now=NOW) is None


def test_garbage_beside_a_good_policy() -> None:
    """A bad member of the list does not spoil the good one."""
    headers = {"RateLimit-Policy": 'junk;;q, "ok";q=50;w=2, "bad";q=x;w=1'}
    assert read_quota(headers, wall_now=NOW) == Quota(rate=25.0)
