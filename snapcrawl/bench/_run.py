"""One bench run: the load model, then the report with its warnings and thresholds."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import anyio
import msgspec
import structlog

from .._config import load_credentials, resolve_endpoint
from .._exceptions import ConfigError, SnapcrawlError
from .._signing import Signer
from .._transport import AiohttpTransport, Transport
from ._client import Client, Live, check_credentials
from ._config import BenchConfig, Mode
from ._findmax import CLIENT_BOUND_MS, find_max
from ._hist import figures
from ._recorder import Recorder
from ._report import BenchReport, Latency, Step
from ._search import RateSearch

__all__ = ["LAG_WARNING_MS", "LAG_WARNING_PREFIX", "lag_warning", "run", "settings"]

#: A p99 scheduling lag above this is printed as a warning: the bench's own delay, not the server's.
LAG_WARNING_MS: Final = 1.0
#: How every scheduling-lag warning begins (a merge replaces the runs' own with one of the merged lag).
LAG_WARNING_PREFIX: Final = "the load generator"

_log = structlog.get_logger("snapcrawl")


async def _measure(client: Client, config: BenchConfig) -> BenchReport:
    """Run the load model, then build the report and check the thresholds against it."""
    mode: Mode = config.mode
    notes: list[str] = []
    search: RateSearch | None = None
    steps: list[Step] | None = None
    if mode == "find-max":
        recorder, search, steps, notes = await find_max(client, config)
    elif mode == "open":
        recorder = await client.open(config.profile)
    else:
        index, of = client.share
        concurrency = config.concurrency or 1
        if concurrency < of:
            raise ConfigError(f"concurrency {concurrency} cannot be shared by {of} workers: give at least one each")
        recorder = await client.closed(concurrency // of + (index < concurrency % of), config.duration)
    check_credentials(recorder)
    report = _report(client, config, mode, recorder, notes)
    if search is not None:
        best = [step for step in steps or () if step.passed and step.target_rps == search.result]
        report = msgspec.structs.replace(
            report,
            max_sustainable_rps=search.result,
            search_precision=search.bound,
            steps=steps,
            slo=best[-1].slo if best else [],
        )
    results = [threshold.check(report) for threshold in config.thresholds]
    return msgspec.structs.replace(report, thresholds=results)


def _report(client: Client, config: BenchConfig, mode: Mode, recorder: Recorder, notes: list[str]) -> BenchReport:
    """The report of ``recorder``, with the warnings that qualify it."""
    measured = figures(recorder.corrected, recorder.uncorrected, recorder.lag, config.percentiles)
    lag = measured["scheduling_lag_ms"]
    warnings = list(notes)
    if (warning := lag_warning(lag)) is not None:
        warnings.append(warning)
    peak = client.profile.peak / client.share[1] if client.profile is not None else client.target or 0.0
    per_url = peak / len(client.urls)
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
        endpoint=client.endpoint,
        requests=recorder.completed,
        duration_s=recorder.last_done - recorder.start,
        target_rps=client.target if mode != "closed" else None,
        achieved_rps=recorder.achieved_rps,
        concurrency=client.concurrency,
        max_in_flight=config.max_in_flight if mode != "closed" else client.concurrency or 0,
        status={str(status): n for status, n in sorted(recorder.status.items())},
        errors=dict(recorder.errors.most_common()),
        throttled=recorder.throttled,
        failed=recorder.failed,
        held_back=recorder.held_back,
        timeline=recorder.timeline(),
        warnings=warnings,
        stages=[(duration, target / client.share[1]) for duration, target in config.stages],
        started_at=time.time() - (client.clock() - recorder.start),
        settings=settings(config),
        **measured,
    )


@contextlib.contextmanager
def _quiet_collector() -> Iterator[None]:
    """Keep the garbage collector off everything that exists before the load (imports, set-up).

    A full collection walks every tracked object: with the interpreter's own objects that took hundreds of
    milliseconds mid-run on a busy machine, a stall the scheduling lag then shows. Frozen objects are never walked;
    what the load allocates is still collected.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def lag_warning(lag: Latency) -> str | None:
    """The warning for a scheduling lag p99 over :data:`LAG_WARNING_MS`; plain that the generator, not the
    server, was the limit when it fell behind its schedule for the median request."""
    if lag.p99 <= LAG_WARNING_MS:
        return None
    if lag.p50 > CLIENT_BOUND_MS:
        return (
            f"the load generator, not the server, was the limit: it fell behind its own schedule (scheduling lag "
            f"p50 {lag.p50:.2f} ms, p99 {lag.p99:.2f} ms), so this rate measures it, not the endpoint; spread the "
            "load with --workers N (a core each)"
        )
    return (
        f"the load generator sent some requests late (scheduling lag p99 {lag.p99:.2f} ms, over "
        f"{LAG_WARNING_MS:g} ms), so the latencies include up to that much of its own delay: a busy machine, or "
        "a rate near this generator's limit (--workers N spreads the load)"
    )


def settings(config: BenchConfig) -> dict[str, Any]:
    """The run's settings for the saved report, credentials left out."""
    return {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name != "credentials" and getattr(config, field.name) != field.default
    }


async def run(
    config: BenchConfig,
    *,
    transport: Transport | None = None,
    progress: Callable[[Live], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    share: tuple[int, int] = (0, 1),
    start_at: float | None = None,
) -> BenchReport:
    """Benchmark the endpoint as ``config`` says; return the report.

    ``transport`` replaces the aiohttp one (tests, or a custom client); ``progress`` is called about twice a
    second with a :class:`Live` view. Raises :class:`ConfigError` for missing credentials or endpoint and
    :class:`AuthError` when every answer rejected the credentials. ``share=(i, n)`` makes this worker ``i`` of
    ``n`` (it sends every ``n``-th request of the schedule, or its part of the concurrency), starting at the Unix
    time ``start_at``.
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
    client = Client(config, endpoint=endpoint, transport=transport, signer=signer, clock=clock)
    client.share = share
    error: SnapcrawlError | None = None
    try:
        # The collection before the freeze can take a while: before the start time, never after it.
        with _quiet_collector():
            async with anyio.create_task_group() as tg:
                if start_at is not None:
                    client.zero = clock() + (start_at - time.time())
                    await anyio.sleep(max(0.0, start_at - time.time()))
                if progress is not None:
                    tg.start_soon(client.report_progress, progress)
                try:
                    report = await _measure(client, config)
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
