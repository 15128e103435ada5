"""The find-max search run against an endpoint: open-loop steps at the rates :class:`RateSearch` picks.

A step passes with at most ``max_failed`` of its requests throttled or failed and every ``--slo`` objective met
(``p99<200ms``, ``p95<50ms``, ``mean<20ms``...). A step that failed for reasons of the bench's own (it fell
behind, or stalled and then sent a burst) is run once more before it counts.
"""

from __future__ import annotations

from typing import Final

import anyio
import msgspec
import structlog

from .._exceptions import SnapcrawlError
from ._client import Client, check_credentials
from ._config import BenchConfig
from ._ramp import Profile
from ._recorder import Recorder
from ._report import Step
from ._search import RateSearch

__all__ = ["CLIENT_BOUND_MS", "STALL_MS", "bench_excuse", "find_max", "judge"]

#: A find-max step whose *median* scheduling lag exceeds this measured the bench, not the endpoint: it is run once
#: more, and if the client falls behind its schedule again (the OS preempting it now and then only moves the
#: tail), the search stops there.
CLIENT_BOUND_MS: Final = 5.0
#: A find-max step that failed while the bench itself stalled this long, by no more requests than the catch-up
#: burst holds, is run once more: after the OS paused the client it sends the overdue requests at once, and a
#: server's token bucket may throttle that burst rather than the rate.
STALL_MS: Final = 20.0
#: Where find-max starts when no rate is given.
DEFAULT_START_RATE: Final = 50.0
#: How long a find-max step waits for its last answers, and the pause before the next step.
STEP_DRAIN: Final = 2.0
STEP_PAUSE: Final = 0.5

_log = structlog.get_logger("snapcrawl")


async def find_max(client: Client, config: BenchConfig) -> tuple[Recorder, RateSearch, list[Step], list[str]]:
    """Step the rate as :class:`RateSearch` says until it is done or the budget would be overrun.

    Returns the recorder of the highest step that passed (else of the lowest tried), the search, every step, and
    notes on why the search ended early.
    """
    deadline = client.clock() + config.budget
    search = RateSearch(start=config.rate or min(DEFAULT_START_RATE, config.max_rate), max_rate=config.max_rate)
    steps: list[Step] = []
    notes: list[str] = []
    best: tuple[float, Recorder] | None = None
    lowest: tuple[float, Recorder] | None = None
    drain = min(config.timeout, STEP_DRAIN)
    repeated: float | None = None
    while (rate := search.next_rate()) is not None:
        if client.clock() + config.step_duration + drain > deadline:
            notes.append(f"find-max stopped at its {config.budget:g} s budget before it reached its precision")
            break
        client.step = len(steps) + 1
        recorder = await client.open(Profile.constant(rate, config.step_duration), drain=drain)
        check_credentials(recorder)
        step = judge(config, rate, recorder)
        if (excuse := bench_excuse(step, config.max_failed)) and repeated != rate:
            repeated = rate  # once per rate: a busy moment passes, a client that cannot keep up does not
            steps.append(msgspec.structs.replace(step, reason=f"{step.reason}; {excuse}, so run again"))
            await anyio.sleep(STEP_PAUSE)
            continue
        steps.append(step)
        _log.info("bench.step", rate=rate, passed=step.passed, reason=step.reason)
        if step.reason == "client-bound":
            notes.append(
                f"find-max stopped: at {rate:g} req/s the bench itself fell behind its schedule (median "
                f"scheduling lag over {CLIENT_BOUND_MS:g} ms); the endpoint may sustain more than it can send"
            )
            break
        search.record(rate, passed=step.passed)
        if step.passed and (best is None or rate > best[0]):
            best = (rate, recorder)
        if lowest is None or rate < lowest[0]:
            lowest = (rate, recorder)
        if search.next_rate() is not None:
            await anyio.sleep(STEP_PAUSE)  # let the server's rate windows empty before the next step
    client.step = None
    chosen = best or lowest
    if chosen is None:
        raise SnapcrawlError(f"find-max could not run a single {config.step_duration:g} s step in its budget")
    client.target = chosen[0]
    return chosen[1], search, steps, notes


def judge(config: BenchConfig, rate: float, recorder: Recorder) -> Step:
    """Whether the endpoint sustained ``rate`` in this step, and why not."""
    requests = recorder.completed
    throttled, failed = recorder.throttled, recorder.failed
    p99 = recorder.latency_at(99.0)
    lag = recorder.scheduling_lag()
    slo = [objective.meet(recorder) for objective in config.slos]
    missed = [result for result in slo if result.breached]
    if not requests:
        passed, reason = False, "no request in a step this short"
    elif lag.p50 > CLIENT_BOUND_MS:
        passed, reason = False, "client-bound"
    elif throttled + failed > config.max_failed * requests:
        passed, reason = False, f"{(throttled + failed) / max(1, requests):.1%} throttled or failed"
    elif missed:
        passed, reason = False, "; ".join(f"SLO {result.condition!r} missed: {result.shown}" for result in missed)
    else:
        passed, reason = True, "sustained"
    return Step(
        target_rps=rate,
        achieved_rps=recorder.achieved_rps,
        requests=requests,
        throttled=throttled,
        failed=failed,
        p99_ms=p99,
        scheduling_lag_p99_ms=lag.p99,
        scheduling_lag_max_ms=lag.max,
        passed=passed,
        reason=reason,
        slo=slo,
    )


def bench_excuse(step: Step, max_failed: float) -> str | None:
    """Why a failed step may say more about the bench than the endpoint, or ``None``.

    Either the bench fell behind its schedule, or it stalled and its catch-up burst can explain the failures.
    """
    if step.passed:
        return None
    if step.reason == "client-bound":
        return "the bench fell behind its schedule"
    if step.scheduling_lag_max_ms <= STALL_MS:
        return None
    burst = step.target_rps * step.scheduling_lag_max_ms / 1000
    if step.throttled + step.failed > burst + max_failed * step.requests:
        return None
    return f"the bench itself stalled {step.scheduling_lag_max_ms:.0f} ms"
