"""One bench run: sign and send each request on the load model's schedule, record it, build the report."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Final

import anyio
import msgspec
import structlog

from .._config import load_credentials, resolve_endpoint
from .._exceptions import AuthError, SnapcrawlError
from .._signing import Signer, encode_query
from .._transport import AiohttpTransport, Transport
from ._config import BenchConfig, Mode
from ._recorder import Recorder
from ._report import BenchReport, Step
from ._schedule import closed_loop, open_loop
from ._search import RateSearch

__all__ = ["LAG_WARNING_MS", "Live", "run"]

#: A p99 scheduling lag above this is printed as a warning: the bench's own delay, not the server's.
LAG_WARNING_MS: Final = 1.0
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
UNANSWERED: Final = "no answer when the step ended"

_log = structlog.get_logger("snapcrawl")


@dataclasses.dataclass(frozen=True, slots=True)
class Live:
    """The run so far, handed to a progress callback about twice a second; ``p99_ms`` is of the latest second."""

    elapsed: float
    target_rps: float | None
    sent: int
    completed: int
    in_flight: int
    throttled: int
    failed: int
    p99_ms: float
    step: int | None = None


def _first_page_urls(endpoint: str, config: BenchConfig) -> tuple[str, ...]:
    """The first page of each volume (or of the account listing), exactly as the crawler asks for it."""
    params = {"limit": str(config.page_size), "with_count": "true"}
    if config.name is not None:
        params["name"] = config.name
    if config.sort is not None:
        params["sort"] = config.sort
    base = f"{endpoint}/v1/snapshots?"
    if not config.volume_ids:
        return (base + encode_query(params),)
    return tuple(base + encode_query(params | {"volume_id": volume_id}) for volume_id in config.volume_ids)


def _error_kind(exc: SnapcrawlError) -> str:
    """A short, stable name for a failure, for counting: the message up to its first colon."""
    return str(exc).split(":", 1)[0][:80] or type(exc).__name__


class _Bench:
    """Sends and records requests for one run; find-max gives each step a fresh :class:`Recorder`."""

    def __init__(
        self,
        config: BenchConfig,
        *,
        endpoint: str,
        transport: Transport,
        signer: Signer,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        self.transport = transport
        self.signer = signer
        self.clock = clock
        self.urls = _first_page_urls(endpoint, config)
        self.recorder = Recorder(clock())
        self.target: float | None = None
        self.step: int | None = None
        self._next = 0

    def _begin(self, start: float) -> None:
        self.recorder = Recorder(start)

    async def send(self, intended: float, ready: float, held_back: bool) -> None:
        """Sign and send the next first-page request now; record it against ``intended``."""
        recorder, clock, urls = self.recorder, self.clock, self.urls
        url = urls[self._next % len(urls)]
        self._next += 1
        sent = clock()
        recorder.on_send(intended=intended, at=sent, lag=sent - ready, held_back=held_back)
        try:
            response = await self.transport.get(url, self.signer.headers("GET", url))
        except SnapcrawlError as exc:
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=None, error=_error_kind(exc))
        except anyio.get_cancelled_exc_class():
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=None, error=UNANSWERED)
            raise
        else:
            recorder.on_done(intended=intended, sent=sent, done=clock(), status=response.status, error=None)

    # -- load models ------------------------------------------------------------------------------------------

    async def open(self, rate: float, duration: float, *, drain: float | None = None) -> Recorder:
        self.target = rate
        await open_loop(
            self.send,
            rate=rate,
            duration=duration,
            max_in_flight=self.config.max_in_flight,
            drain=drain,
            clock=self.clock,
            on_start=self._begin,
        )
        return self.recorder

    async def closed(self, concurrency: int, duration: float) -> Recorder:
        await closed_loop(self.send, concurrency=concurrency, duration=duration, clock=self.clock, on_start=self._begin)
        return self.recorder

    async def find_max(self) -> tuple[Recorder, RateSearch, list[Step], list[str]]:
        """Step the rate as :class:`RateSearch` says until it is done or the budget would be overrun."""
        config = self.config
        deadline = self.clock() + config.budget
        search = RateSearch(start=config.rate or min(DEFAULT_START_RATE, config.max_rate), max_rate=config.max_rate)
        steps: list[Step] = []
        notes: list[str] = []
        best: tuple[float, Recorder] | None = None
        lowest: tuple[float, Recorder] | None = None
        drain = min(config.timeout, STEP_DRAIN)
        repeated: float | None = None
        while (rate := search.next_rate()) is not None:
            if self.clock() + config.step_duration + drain > deadline:
                notes.append(f"find-max stopped at its {config.budget:g} s budget before it reached its precision")
                break
            self.step = len(steps) + 1
            recorder = await self.open(rate, config.step_duration, drain=drain)
            _check_credentials(recorder)
            step = self._judge(rate, recorder)
            if (excuse := _bench_excuse(step, config.max_failed)) and repeated != rate:
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
        self.step = None
        chosen = best or lowest
        if chosen is None:
            raise SnapcrawlError(f"find-max could not run a single {config.step_duration:g} s step in its budget")
        self.target = chosen[0]
        return chosen[1], search, steps, notes

    def _judge(self, rate: float, recorder: Recorder) -> Step:
        config = self.config
        requests = recorder.completed
        throttled, failed = recorder.throttled, recorder.failed
        p99 = recorder.latency().p99
        lag = recorder.scheduling_lag()
        if not requests:
            passed, reason = False, "no request in a step this short"
        elif lag.p50 > CLIENT_BOUND_MS:
            passed, reason = False, "client-bound"
        elif throttled + failed > config.max_failed * requests:
            passed, reason = False, f"{(throttled + failed) / max(1, requests):.1%} throttled or failed"
        elif config.slo_p99_ms is not None and p99 > config.slo_p99_ms:
            passed, reason = False, f"p99 {p99:.1f} ms over the {config.slo_p99_ms:g} ms SLO"
        else:
            passed, reason = True, "sustained"
        return Step(
            target_rps=rate,
            achieved_rps=_achieved(recorder),
            requests=requests,
            throttled=throttled,
            failed=failed,
            p99_ms=p99,
            scheduling_lag_p99_ms=lag.p99,
            scheduling_lag_max_ms=lag.max,
            passed=passed,
            reason=reason,
        )

    def live(self) -> Live:
        recorder = self.recorder
        return Live(
            elapsed=self.clock() - recorder.start,
            target_rps=self.target,
            sent=recorder.sent,
            completed=recorder.completed,
            in_flight=recorder.sent - recorder.completed,
            throttled=recorder.throttled,
            failed=recorder.failed,
            p99_ms=recorder.recent_p99(),
            step=self.step,
        )

    async def report_progress(self, progress: Callable[[Live], None]) -> None:
        while True:
            await anyio.sleep(0.5)
            progress(self.live())

    # -- the whole run ----------------------------------------------------------------------------------------

    async def run(self) -> BenchReport:
        config = self.config
        mode: Mode = config.mode
        notes: list[str] = []
        search: RateSearch | None = None
        steps: list[Step] | None = None
        if mode == "find-max":
            recorder, search, steps, notes = await self.find_max()
        elif config.rate is not None:
            recorder = await self.open(config.rate, config.duration)
        else:
            recorder = await self.closed(config.concurrency or 1, config.duration)
        _check_credentials(recorder)
        report = self._report(mode, recorder, notes)
        if search is not None:
            report = msgspec.structs.replace(
                report, max_sustainable_rps=search.result, search_precision=search.bound, steps=steps
            )
        results = [threshold.check(report) for threshold in config.thresholds]
        return msgspec.structs.replace(report, thresholds=results)

    def _report(self, mode: Mode, recorder: Recorder, notes: list[str]) -> BenchReport:
        config = self.config
        lag = recorder.scheduling_lag()
        warnings = list(notes)
        if lag.p99 > LAG_WARNING_MS:
            warnings.append(
                f"the bench itself sent requests late: scheduling lag p99 {lag.p99:.2f} ms (over {LAG_WARNING_MS:g} "
                "ms); latencies include that much of its own delay (a busy machine, or a rate beyond this client)"
            )
        per_url = (self.target or 0.0) / len(self.urls)
        if per_url > 1000:
            warnings.append(
                f"{per_url:.0f} req/s for each URL: the signer never repeats a signature, so timestamps ran ahead "
                "of the clock; a long run would fail the server's clock-skew check (give more volume ids)"
            )
        if recorder.held_back:
            warnings.append(
                f"{recorder.held_back} requests were held back by max_in_flight {config.max_in_flight}; their "
                "latency still counts from their intended send time (the uncorrected figures leave the wait out)"
            )
        return BenchReport(
            mode=mode,
            endpoint=self.endpoint,
            requests=recorder.completed,
            duration_s=recorder.last_done - recorder.start,
            target_rps=self.target if mode != "closed" else None,
            achieved_rps=_achieved(recorder),
            concurrency=config.concurrency,
            max_in_flight=config.max_in_flight if mode != "closed" else config.concurrency or 0,
            status={str(status): n for status, n in sorted(recorder.status.items())},
            errors=dict(recorder.errors.most_common()),
            throttled=recorder.throttled,
            failed=recorder.failed,
            held_back=recorder.held_back,
            latency_ms=recorder.latency(),
            latency_uncorrected_ms=recorder.latency_uncorrected(),
            scheduling_lag_ms=lag,
            timeline=recorder.timeline(),
            spectrum_ms={
                "corrected": recorder.spectrum(corrected=True),
                "uncorrected": recorder.spectrum(corrected=False),
            },
            warnings=warnings,
        )


def _bench_excuse(step: Step, max_failed: float) -> str | None:
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


def _achieved(recorder: Recorder) -> float:
    elapsed = recorder.last_done - recorder.start
    return recorder.completed / elapsed if elapsed > 0 else 0.0


def _check_credentials(recorder: Recorder) -> None:
    """Every answer a 401 or 403 means the credentials were rejected: measuring that would mislead."""
    answers = sum(recorder.status.values())
    rejected = recorder.status[401] + recorder.status[403]
    if answers and rejected == answers:
        raise AuthError(f"every answer ({answers}) was 401 or 403: the endpoint rejected the credentials", status=401)


async def run(
    config: BenchConfig,
    *,
    transport: Transport | None = None,
    progress: Callable[[Live], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BenchReport:
    """Benchmark the endpoint as ``config`` says; return the report.

    ``transport`` replaces the aiohttp one (tests, or a custom client); ``progress`` is called about twice a
    second with a :class:`Live` view. Raises :class:`ConfigError` for missing credentials or endpoint and
    :class:`AuthError` when every answer rejected the credentials.
    """
    endpoint = resolve_endpoint(config.endpoint, region=config.region, environment=config.environment)
    credentials = config.credentials if config.credentials is not None else load_credentials()
    signer = Signer(credentials, api_version=config.api_version)
    if not config.verify_tls:
        _log.warning("tls.verification_disabled", endpoint=endpoint)
    connections = config.concurrency if config.mode == "closed" and config.concurrency else config.max_in_flight
    own = transport is None
    if transport is None:
        transport = AiohttpTransport(connections=connections, timeout=config.timeout, verify_tls=config.verify_tls)
    bench = _Bench(config, endpoint=endpoint, transport=transport, signer=signer, clock=clock)
    error: SnapcrawlError | None = None
    try:
        async with anyio.create_task_group() as tg:
            if progress is not None:
                tg.start_soon(bench.report_progress, progress)
            try:
                report = await bench.run()
            except SnapcrawlError as exc:  # raised as itself, not inside an exception group
                error = exc
            tg.cancel_scope.cancel()
    finally:
        if own:
            with anyio.CancelScope(shield=True):
                await transport.aclose()
    if error is not None:
        raise error
    return report
