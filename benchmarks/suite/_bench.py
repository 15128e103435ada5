"""What every measurement shares: the plan (how big), the targets, and one run's state (scratch directory,
simulators, checks, results)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..helpers.harness import SimulatorProcess, count_lines_and_ids

__all__ = ["FULL", "QUICK", "RESULTS", "TARGETS", "Bench", "Plan", "log", "verdict"]

RESULTS: Final = Path(__file__).resolve().parents[1] / "results"
TARGETS: Final = {
    "vs_ceiling": 1.0,
    "vs_naive": 1.15,
    "latency_hiding": 0.95,
    "rate_accuracy": 0.02,
    "own_overhead_us": 30.0,
    "rss_mb": 150.0,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """How big each measurement is."""

    volumes: int = 10_000
    rounds: int = 7
    latency_seconds: float = 10.0
    rate_seconds: float = 10.0
    memory_volumes: tuple[int, int] = (10_000, 100_000)
    page_size: int = 100
    concurrency: int = 64
    rate: float = 300.0
    burst: int = 10
    seed: int = 0


FULL: Final = Plan()
QUICK: Final = Plan(volumes=2_000, rounds=3, latency_seconds=3.0, rate_seconds=3.0, memory_volumes=(2_000, 20_000))


def log(message: str) -> None:
    """A progress line on stderr (the report itself goes to stdout at the end)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    """PASS or FAIL, for the report."""
    return "PASS" if ok else "FAIL"


class Bench:
    """Shared state of one benchmark run: the plan, a scratch directory, the simulators, the checks.

    ``baseline`` is another checkout of snapcrawl whose core the throughput measurement runs side by side with
    this one (``--baseline DIR``), or ``None``.
    """

    def __init__(self, plan: Plan, workdir: Path, stack: contextlib.ExitStack, *, baseline: Path | None = None) -> None:
        self.plan = plan
        self.workdir = workdir
        self.baseline = baseline
        self._stack = stack
        self._plain: SimulatorProcess | None = None
        self.checks: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    def check(self, name: str, ok: bool, detail: str) -> None:
        """Record a correctness check; failures are shouted at once and fail the run."""
        self.checks.append({"name": name, "ok": ok, "detail": detail})
        if not ok:
            log(f"!!! CHECK FAILED: {name}: {detail}")

    def plain_simulator(self) -> SimulatorProcess:
        """The fault-free simulator of ``plan.volumes`` volumes, started on first use and shared."""
        if self._plain is None:
            self._plain = self.simulator(self.plan.volumes)
        return self._plain

    def simulator(self, volumes: int, faults: Sequence[str] = ()) -> SimulatorProcess:
        """A simulator subprocess that lives until the end of the run (or until its ``stop()``)."""
        sim = SimulatorProcess(volumes=volumes, seed=self.plan.seed, faults=faults, workdir=self.workdir)
        self._stack.enter_context(sim)
        log(f"simulator {sim.url}: {volumes:,} volumes {' '.join(faults)} (started in {sim.start_seconds:.1f} s)")
        return sim

    def verify(self, name: str, out: Path, expected: int) -> tuple[int, bool]:
        """Check ``out`` holds ``expected`` lines with as many distinct snapshot ids (each exactly once); delete it."""
        try:
            lines, distinct = count_lines_and_ids(out)
        except (OSError, ValueError) as exc:  # missing, or not JSON Lines of snapshots
            lines, distinct, problem = -1, -1, f"unreadable output: {exc}"
        else:
            problem = "" if lines == distinct == expected else "  <-- MISMATCH"
        out.unlink(missing_ok=True)
        detail = f"{lines:,} lines, {distinct:,} distinct ids, expected {expected:,}{problem}"
        self.check(f"{name}: every snapshot exactly once", not problem, detail)
        return lines, not problem
