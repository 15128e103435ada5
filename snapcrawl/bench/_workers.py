"""``--workers N``: N load-generating processes that start together, share the load, and merge into one report.

A Python load generator tops out at about one core, so more load means more processes. Each worker runs
:func:`~._run.run` with ``share=(i, N)``: it sends every N-th request of the one schedule (so together they send
exactly the schedule, ramps included), or its part of the concurrency. The parent starts them, waits until every
one has imported and is ready, gives them one wall-clock start time, sums their live views, and merges their
reports exactly as ``snapcrawl bench report`` merges saved runs.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import anyio
import msgspec

from .._exceptions import AuthError, ConfigError, SnapcrawlError
from ._client import Live
from ._config import BenchConfig
from ._merge import merge, rejudge
from ._report import BenchReport, decode_report, encode_report
from ._run import run, settings

__all__ = ["run_workers"]

#: Between the last worker saying it is ready and the common start: time for the start message to arrive and
#: for each worker's set-up (the transport, a garbage collection) to end before its first request is due.
START_DELAY: Final = 1.0
#: How long a worker may take to start up (spawn a Python, import snapcrawl) before the run is given up.
READY_TIMEOUT: Final = 60.0
_POLL: Final = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    """What one worker process is given: its place among this run's workers (``slot``), its config and share of
    the schedule, the event loop, its queues, and whether to send live views."""

    slot: int
    config: BenchConfig
    share: tuple[int, int]
    uvloop: bool
    inbox: Any
    outbox: Any
    live: bool


def _work(job: _Job) -> None:  # pragma: no cover - runs in a child process; covered through run_workers
    """One worker process: say ready, wait for the start time, run, send the report (or the error) back."""
    index, outbox = job.slot, job.outbox
    outbox.put(("ready", index))
    start_at = job.inbox.get()

    def progress(live: Live) -> None:
        outbox.put(("live", index, live))

    try:
        report = anyio.run(
            partial(run, job.config, share=job.share, start_at=start_at, progress=progress if job.live else None),
            backend_options={"use_uvloop": job.uvloop},
        )
    except SnapcrawlError as exc:
        outbox.put(("error", index, type(exc).__name__, str(exc)))
    except BaseException as exc:
        outbox.put(("error", index, type(exc).__name__, repr(exc)))
    else:
        outbox.put(("done", index, encode_report(report)))


def _raise(index: int, kind: str, message: str) -> None:
    text = f"worker {index + 1}: {message}"
    if kind == "AuthError":
        raise AuthError(text, status=401)
    if kind == "ConfigError":
        raise ConfigError(text)
    raise SnapcrawlError(text)


def _sum(views: dict[int, Live]) -> Live:
    """One live view of every worker: counts and rates add up; p50 and p99 are the worst worker's."""
    lives = list(views.values())
    return Live(
        elapsed=max(live.elapsed for live in lives),
        target_rps=sum(live.target_rps or 0.0 for live in lives) or None,
        sent=sum(live.sent for live in lives),
        completed=sum(live.completed for live in lives),
        in_flight=sum(live.in_flight for live in lives),
        throttled=sum(live.throttled for live in lives),
        failed=sum(live.failed for live in lives),
        p99_ms=max(live.p99_ms for live in lives),
        rate=sum(live.rate for live in lives),
        p50_ms=max(live.p50_ms for live in lives),
    )


class _Pool:
    """The worker processes and what they have said so far."""

    def __init__(
        self,
        config: BenchConfig,
        progress: Callable[[Live], None] | None,
        uvloop: bool,
        share: tuple[int, int],
        start_at: float | None,
    ) -> None:
        count = config.workers
        machine, machines = share  # worker k here is worker machine + k * machines of them all
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no event loop or sockets inherited
        self.outbox = context.Queue()
        self.inboxes = [context.Queue() for _ in range(count)]
        worker_config = dataclasses.replace(config, workers=1, fail_if=())
        self.processes = [
            context.Process(
                target=_work,
                args=(
                    _Job(
                        index,
                        worker_config,
                        (machine + index * machines, count * machines),
                        uvloop,
                        self.inboxes[index],
                        self.outbox,
                        bool(progress),
                    ),
                ),
                name=f"snapcrawl-bench-worker-{index + 1}",
                daemon=True,
            )
            for index in range(count)
        ]
        self.progress = progress
        self.start_at = start_at
        self.reports: dict[int, BenchReport] = {}
        self.views: dict[int, Live] = {}
        self.ready = 0

    async def run(self) -> list[BenchReport]:
        """Start the workers, start them together, and collect their reports."""
        count = len(self.processes)
        try:
            for process in self.processes:
                process.start()
            deadline = time.monotonic() + READY_TIMEOUT
            while len(self.reports) < count:
                try:
                    message = await anyio.to_thread.run_sync(partial(self.outbox.get, timeout=_POLL))
                except queue.Empty:
                    self._check_alive(too_slow=self.ready < count and time.monotonic() > deadline)
                    continue
                self._receive(message)
        finally:
            with anyio.CancelScope(shield=True):
                for process in self.processes:
                    if process.is_alive() and len(self.reports) < count:
                        process.terminate()
                for process in self.processes:
                    await anyio.to_thread.run_sync(process.join, 5.0)
        return [self.reports[index] for index in range(count)]

    def _receive(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1]
        if kind == "ready":
            self.ready += 1
            if self.ready == len(self.processes):
                start_at = max(self.start_at or 0.0, time.time() + START_DELAY)
                for inbox in self.inboxes:
                    inbox.put(start_at)
        elif kind == "live":
            self.views[index] = message[2]
            if self.progress is not None and len(self.views) == len(self.processes):
                self.progress(_sum(self.views))
        elif kind == "error":
            _raise(index, message[2], message[3])
        else:
            self.reports[index] = decode_report(message[2], source=f"worker {index + 1}")

    def _check_alive(self, *, too_slow: bool) -> None:
        """A worker that died without a word, or workers that never got ready, end the run with an error."""
        for index, process in enumerate(self.processes):
            if index not in self.reports and not process.is_alive() and process.exitcode not in (None, 0):
                raise SnapcrawlError(f"worker {index + 1} exited with status {process.exitcode} before its report")
        if too_slow:
            raise SnapcrawlError(f"the {len(self.processes)} workers were not all ready within {READY_TIMEOUT:g} s")


async def run_workers(
    config: BenchConfig,
    *,
    progress: Callable[[Live], None] | None = None,
    uvloop: bool = False,
    share: tuple[int, int] = (0, 1),
    start_at: float | None = None,
) -> BenchReport:
    """Run ``config`` in ``config.workers`` processes at once; their merged report, thresholds checked.

    With ``share=(i, m)`` this machine is ``i`` of ``m`` (each running this many workers) and its workers take
    their part of that share; ``start_at`` (Unix time) is when the load starts, if not earlier than they can.
    """
    reports = await _Pool(config, progress, uvloop, share, start_at).run()
    merged = merge(reports, percentiles=config.percentiles)
    merged = msgspec.structs.replace(merged, settings=settings(config), workers=config.workers)
    return rejudge(merged, config.fail_if)
