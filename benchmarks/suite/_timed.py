"""Run one crawl client once its imports are done, and write what it did as JSON.

    python -m benchmarks.suite._timed --report FILE [--profile DIR] {snapcrawl,naive,ceiling} ARGS...

``snapcrawl`` is the command line exactly as ``snapcrawl crawl ARGS`` runs it; ``naive`` and ``ceiling`` are
the modules of that name. The clock and the CPU clock start after the imports, so interpreter start-up is not
counted against any client. The report holds the exit code, ``elapsed`` and ``cpu`` seconds, and the requests
and snapshots counted (for the command line, read from its summary line, with the file it was imported from).
``--profile DIR`` runs the client under pyinstrument, writes ``profile.txt`` and ``profile.html`` there, and adds a
per-request breakdown (see :mod:`benchmarks.suite._profile`) to the report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SUMMARY = re.compile(r"(?P<snapshots>\d+) snapshots, (?P<requests>\d+) requests in")


def _high_water_kb() -> int:
    """This process's peak resident set (``VmHWM``, KiB); ``ru_maxrss`` would include the parent's."""
    with open("/proc/self/status", encoding="ascii", errors="replace") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _snapcrawl() -> Callable[[list[str]], dict[str, Any]]:
    from snapcrawl import cli  # noqa: PLC0415 - each client imports only what it runs

    def run(args: list[str]) -> dict[str, Any]:
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            code = cli.main(["crawl", *args])
        text = captured.getvalue()
        sys.stderr.write(text)
        match = _SUMMARY.search(text)
        counts = {key: int(value) for key, value in match.groupdict().items()} if match else {}
        return {"exit_code": code, "module": cli.__file__, **counts}

    return run


def _module(name: str) -> Callable[[list[str]], dict[str, Any]]:
    module = importlib.import_module(f"benchmarks.clients.{name}")

    def run(args: list[str]) -> dict[str, Any]:
        counts = module.run(args)
        return {"exit_code": 0, "requests": counts.requests, "snapshots": counts.snapshots}

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client, write the report, exit with the client's exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite._timed")
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--profile", type=Path, metavar="DIR")
    parser.add_argument("client", choices=("snapcrawl", "naive", "ceiling"))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    run = _snapcrawl() if options.client == "snapcrawl" else _module(options.client)
    profiler = None
    if options.profile is not None:
        from pyinstrument import Profiler  # noqa: PLC0415 - only needed when profiling

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        result = run(options.args)
    finally:
        if profiler is not None:
            profiler.stop()
    result["elapsed"] = time.perf_counter() - started
    result["cpu"] = time.process_time() - cpu_started
    result["peak_rss_mb"] = _high_water_kb() / 1024
    if profiler is not None:
        from ._profile import breakdown  # noqa: PLC0415 - only needed when profiling

        options.profile.mkdir(parents=True, exist_ok=True)
        (options.profile / "profile.txt").write_text(profiler.output_text(unicode=True), encoding="utf-8")
        (options.profile / "profile.html").write_text(profiler.output_html(), encoding="utf-8")
        if profiler.last_session is not None:
            result["profile"] = breakdown(profiler.last_session, requests=int(result.get("requests") or 0))
    options.report.write_text(json.dumps(result), encoding="utf-8")
    return int(result["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
