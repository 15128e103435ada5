"""One bench run: the load model, then the report with its warnings and thresholds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import anyio
import msgspec

from .._config import load_credentials, resolve_endpoint
from .._exceptions import SnapcrawlError
from .._log import get_logger
from .._signing import Signer
from .._transport import AiohttpTransport, Transport
from ._client import Client, Live, achieved, check_credentials
from ._config import BenchConfig, Mode
from ._findmax import find_max
from ._recorder import Recorder
from ._report import BenchReport, Step
from ._search import RateSearch

__all__ = ["LAG_WARNING_MS", "run"]

#: A p99 scheduling lag above this is printed as a warning: the bench's own delay, not the server's.
LAG_WARNING_MS: Final = 1.0

_log = get_logger("bench")


async def _measure(client: Client, config: BenchConfig) -> BenchReport:
    """Run the load model, then build the report and check the thresholds against it."""
    mode: Mode = config.mode
    notes: list[str] = []
    search: RateSearch | None = None
    steps: list[Step] | None = None
    if mode == "find-max":
        recorder, search, steps, notes = await find_max(client, config)
    elif config.rate is not None:
        recorder = await client.open(config.rate, config.duration)
    else:
        recorder = await client.closed(config.concurrency or 1, config.duration)
    check_credentials(recorder)
    report = _report(client, config, mode, recorder, notes)
    if search is not None:
        report = msgspec.structs.replace(
            report, max_sustainable_rps=search.result, search_precision=search.bound, steps=steps
        )
    results = [threshold.check(report) for threshold in config.thresholds]
    return msgspec.structs.replace(report, thresholds=results)


def _report(client: Client, config: BenchConfig, mode: Mode, recorder: Recorder, notes: list[str]) -> BenchReport:
    """The report of ``recorder``, with the warnings that qualify it."""
    lag = recorder.scheduling_lag()
    warnings = list(notes)
    if lag.p99 > LAG_WARNING_MS:
        warnings.append(
            f"the bench itself sent requests late: scheduling lag p99 {lag.p99:.2f} ms (over {LAG_WARNING_MS:g} "
            "ms); latencies include that much of its own delay (a busy machine, or a rate beyond this client)"
        )
    per_url = (client.target or 0.0) / len(client.urls)
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
        achieved_rps=achieved(recorder),
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
    client = Client(config, endpoint=endpoint, transport=transport, signer=signer, clock=clock)
    error: SnapcrawlError | None = None
    try:
        async with anyio.create_task_group() as tg:
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
