"""Counts in the CLI's summaries read right: "1 call", "2 calls", never "1 calls"."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from snapcrawl.cli._distributed import _print_limiter_summary


@pytest.mark.parametrize(
    ("count", "requests_word", "call", "lease"), [(1, "request", "call", "lease"), (2, "requests", "calls", "leases")]
)
def test_shared_quota_summary_counts(
    count: int, requests_word: str, call: str, lease: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared quota's line after a crawl: singular for one, plural otherwise."""
    stats = SimpleNamespace(granted_shared=count, redis_calls=count, leases=count, granted_local=0, fallbacks=0)
    _print_limiter_summary(cast(Any, SimpleNamespace(key="k", stats=stats)))
    err = capsys.readouterr().err
    assert f"{count} {requests_word} paced through Redis in {count} {call} ({count} {lease})" in err, err
