"""Events: one frozen object per thing that happened, for every subscriber; nothing built when nobody listens."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest
import structlog

import snapcrawl._fetch
import snapcrawl._run
from snapcrawl import (
    Crawler,
    Event,
    Hooks,
    RateChanged,
    RequestSent,
    ResponseReceived,
    RetryPolicy,
    RetryScheduled,
    SnapcrawlError,
    Throttled,
    VolumeDone,
    VolumeFailed,
)
from snapcrawl.simulator import Faults, Simulator
from tests.helpers import collect

#: Enough tries that a 20% error rate never fails a volume (0.2**13 per request).
PATIENT = RetryPolicy(max_retries=12, backoff_base=0.001, backoff_cap=0.01)


def _crawler(sim: Simulator, **kwargs: object) -> Crawler:
    settings: dict[str, object] = {"endpoint": sim.url, "credentials": sim.credentials, "retry": PATIENT}
    return Crawler(**settings | kwargs)  # type: ignore[arg-type]


async def test_each_hook_gets_one_event_per_thing_done(simulator: Simulator) -> None:
    """Every hook fires once per event it documents, with one frozen event whose fields match the crawl's counts."""
    poison = simulator.dataset.volume_ids[1]
    simulator.faults = Faults(fail_volumes=frozenset({poison}), error_rate=0.2, rate_limit=400, rate_burst=5)
    events: list[Event] = []
    hooks = Hooks(
        on_request=events.append,
        on_response=events.append,
        on_retry=events.append,
        on_throttle=events.append,
        on_rate_change=events.append,
        on_volume_done=events.append,
        on_volume_failed=events.append,
    )
    ids = simulator.dataset.volume_ids[:120]
    async with _crawler(simulator, hooks=hooks, concurrency=32) as crawler:
        result = await crawler.crawl_into(ids, lambda page: None)
    stats = result.stats
    kinds = Counter(type(event) for event in events)
    responses = [e for e in events if isinstance(e, ResponseReceived)]
    statuses = Counter(e.status for e in responses)
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert kinds[RequestSent] == len(responses) == stats.requests
    assert sum(e.size for e in responses) == stats.bytes and all(e.seconds >= 0 for e in responses)
    assert len(retries) == stats.retries > 0
    assert all(e.attempt >= 1 and e.delay >= 0 and isinstance(e.error, SnapcrawlError) for e in retries)
    assert kinds[Throttled] == stats.throttled == statuses[429] > 0
    assert statuses[503] > 0 and kinds[RateChanged] > 0  # throttling changed the rate
    failed = [e.failure for e in events if isinstance(e, VolumeFailed)]
    assert [f.volume_id for f in failed] == [poison] and failed == result.failures
    done = [e for e in events if isinstance(e, VolumeDone)]
    assert sorted(e.volume_id or "" for e in done) == sorted(v for v in ids if v != poison)
    assert sum(e.snapshots for e in done) == stats.snapshots
    with pytest.raises(dataclasses.FrozenInstanceError):
        responses[0].status = 200  # type: ignore[misc]


async def test_several_hooks_objects_all_subscribe(simulator: Simulator) -> None:
    """Hooks given as a list each receive the same event objects, in order."""
    first: list[ResponseReceived] = []
    second: list[ResponseReceived] = []
    hooks = [Hooks(on_response=first.append), Hooks(on_response=second.append)]
    async with _crawler(simulator, hooks=hooks) as crawler:
        await collect(crawler, simulator.dataset.volume_ids[:5])
        assert crawler.hooks == tuple(hooks)
    assert first and all(a is b for a, b in zip(first, second, strict=True))


async def test_a_broken_hook_is_logged_once_per_hook_and_crawler(simulator: Simulator) -> None:
    """Two lambdas that raise are each reported once (not once for every lambda); a second crawler reports again;
    the crawls complete."""
    hooks = Hooks(on_request=lambda event: 1 / 0, on_response=lambda event: {"here": 1}["gone"])
    ids = simulator.dataset.volume_ids[:10]
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            async with _crawler(simulator, hooks=hooks) as crawler:
                snapshots, failures = await collect(crawler, ids)
                await collect(crawler, ids)
            assert not failures and len(snapshots) == sum(simulator.dataset.count(v) for v in ids)
    reports = Counter(e["error"].split(":")[0] for e in logs if e["event"] == "hook.failed")
    assert reports == {"ZeroDivisionError": 2, "KeyError": 2}


async def test_no_event_is_built_when_nobody_listens(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hooks, and with logging above debug, a crawl with retries, throttles and done volumes builds no
    per-request event (the log still subscribes to retries and failures); a hook makes them built again."""
    simulator.faults = Faults(error_rate=0.1, rate_limit=400, rate_burst=5)
    built: Counter[str] = Counter()

    def counting(cls: type) -> object:
        def build(**fields: object) -> object:
            built[cls.__name__] += 1
            return cls(**fields)

        return build

    for module in (snapcrawl._fetch, snapcrawl._run):
        for cls in (RequestSent, ResponseReceived, Throttled, RateChanged, VolumeDone):
            if hasattr(module, cls.__name__):
                monkeypatch.setattr(module, cls.__name__, counting(cls))
    ids = simulator.dataset.volume_ids[:40]
    async with _crawler(simulator) as crawler:
        result = await crawler.crawl_into(ids, lambda page: None)
    assert result.stats.throttled > 0 and result.stats.volumes_done == len(ids)
    assert not built
    async with _crawler(simulator, hooks=Hooks(on_volume_done=lambda event: None)) as crawler:
        await crawler.crawl_into(ids[:3], lambda page: None)
    assert built == {"VolumeDone": 3}


async def test_debug_logging_is_a_subscriber(simulator: Simulator) -> None:
    """With structlog at debug, each attempt is one ``request`` event and each retry one ``request.retry``."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    simulator.faults = Faults(error_rate=0.2)
    with structlog.testing.capture_logs() as logs:
        async with _crawler(simulator) as crawler:
            result = await crawler.crawl_into(simulator.dataset.volume_ids[:20], lambda page: None)
    events = Counter(e["event"] for e in logs)
    assert events["request"] == result.stats.requests
    assert events["request.retry"] == result.stats.retries > 0
