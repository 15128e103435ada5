"""``python -m benchmarks``: pick the measurements, check what they need is installed, run them, report.

Each measurement is a module with ``measure(bench)`` and ``render(results, plan)``; :data:`MEASUREMENTS` lists
them in the order they run and are reported, each under its module's name, so ``--only NAME`` runs
``benchmarks/suite/NAME.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final, NamedTuple

from ..helpers.harness import ALL_CPUS, SERVER_CPUS
from . import latency, memory, overhead, rate_accuracy, throughput
from ._bench import FULL, QUICK, RESULTS, Bench, log
from ._report import Render, machine_info, render

__all__ = ["MEASUREMENTS", "NEEDS", "RENAMED", "Measurement", "main", "missing_modules"]


class Measurement(NamedTuple):
    """One measurement's two halves."""

    measure: Callable[[Bench], None]
    render: Render


MEASUREMENTS: Final = {
    module.__name__.rpartition(".")[2]: Measurement(module.measure, module.render)
    for module in (throughput, latency, rate_accuracy, overhead, memory)
}
#: Names ``--only`` took before they matched the modules; accepted, with a warning, for one release.
RENAMED: Final = {"ratelimit": "rate_accuracy", "profile": "overhead"}
#: Modules a measurement needs beyond snapcrawl's own dependencies; the ``benchmarks`` extra declares them.
NEEDS: Final = {"overhead": ("pyinstrument",)}
EXTRA: Final = "benchmarks"


def missing_modules(names: Sequence[str]) -> list[str]:
    """The modules the measurements ``names`` need that are not installed, so a run fails before it starts."""
    wanted = {module for name in names for module in NEEDS.get(name, ())}
    return sorted(module for module in wanted if importlib.util.find_spec(module) is None)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="snapcrawl-bench-") as name:
        yield Path(name)


def _parser() -> argparse.ArgumentParser:
    names = tuple(MEASUREMENTS)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmark snapcrawl.")
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds (about a minute)")
    parser.add_argument(
        "--only", nargs="+", choices=names + tuple(RENAMED), metavar="NAME", help=f"run only these: {', '.join(names)}"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", metavar="PATH")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another checkout of snapcrawl (e.g. a git worktree of an older commit): its CLI joins the "
        "throughput rounds, side by side with this one",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected measurements, print the report, write the JSON; exit 1 if a check failed, 2 if the
    command cannot run (a module from the ``benchmarks`` extra missing, a bad ``--baseline``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    for old in set(args.only or ()) & RENAMED.keys():
        log(f"--only {old} is now --only {RENAMED[old]} (the old name goes in the next release)")
    only = {RENAMED.get(name, name) for name in args.only or MEASUREMENTS}
    selected = [name for name in MEASUREMENTS if name in only]
    if missing := missing_modules(selected):
        needing = [name for name in selected if set(NEEDS.get(name, ())) & set(missing)]
        parser.error(
            f"the {', '.join(needing)} measurement needs {', '.join(missing)}, from the {EXTRA!r} extra: "
            f"python -m pip install '.[{EXTRA}]' (or leave it out with --only)"
        )
    if args.baseline is not None and not (args.baseline / "snapcrawl" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no snapcrawl package there")
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _on_sigterm)
    if len(ALL_CPUS) >= 2:
        os.sched_setaffinity(0, SERVER_CPUS)  # keep the client's CPU for the client
    else:
        log("fewer than 2 CPUs: server and clients share a CPU, numbers are not comparable")
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "plan": dataclasses.asdict(plan),
        "machine": machine_info(),
    }
    started = time.perf_counter()
    with _workdir() as workdir, contextlib.ExitStack() as stack:
        bench = Bench(plan, workdir, stack, baseline=args.baseline)
        try:
            for name in selected:
                log(f"--- {name}")
                MEASUREMENTS[name].measure(bench)
        finally:
            results.update(bench.results)
            results["checks"] = bench.checks
            results["seconds"] = time.perf_counter() - started
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(render(results, plan, {name: measurement.render for name, measurement in MEASUREMENTS.items()}))
    print(f"\n({results['seconds']:.0f} s; JSON: {args.json})")
    return 0 if all(check["ok"] for check in bench.checks) else 1
