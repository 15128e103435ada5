"""``Scp-Timestamp``: the corrected Unix time in milliseconds, never reused, following a clock that steps back."""

from __future__ import annotations

from snapcrawl import Credentials
from snapcrawl.signing import Signer

CREDS = Credentials(access_key="AK", secret_key="SK")
URL = "https://scp.test/v1/snapshots?limit=100"
T = 1_753_174_800_500  # a moment, in milliseconds


class Clock:
    """A wall clock set to a whole millisecond (half a millisecond in, so truncation never rounds down a step)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return (self.ms + 0.5) / 1000


def _stamp(signer: Signer) -> int:
    return int(signer.headers("GET", URL)["Scp-Timestamp"])


def test_timestamp_is_the_corrected_time_in_milliseconds() -> None:
    """``timestamp()`` is what ``Scp-Timestamp`` carries: milliseconds of the clock plus ``clock_offset``."""
    signer = Signer(CREDS, api_version="1.3", clock=Clock(T))
    assert signer.timestamp() == str(T)
    signer.clock_offset = -2.0
    assert signer.timestamp() == str(T - 2000)
    assert _stamp(signer) == T - 2000


def test_a_clock_stepped_back_over_a_second_is_followed_and_up_to_a_second_is_not() -> None:
    """Up to 1000 ms behind the last timestamp handed out, the same request moves on from that one (never the same
    timestamp twice); more than 1000 ms behind, the clock was corrected and is followed."""
    clock = Clock(T)
    signer = Signer(CREDS, api_version="1.3", clock=clock)
    assert _stamp(signer) == T
    clock.ms = T - 1000
    assert _stamp(signer) == T + 1  # 1000 ms behind T: not followed
    assert _stamp(signer) == T - 1000  # 1001 ms behind T + 1: followed
