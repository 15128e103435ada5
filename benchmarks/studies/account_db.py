"""The whole-account listing into a database against the same listing into JSON Lines, side by side.

    python -m benchmarks.studies.account_db [--volumes 8000] [--latency 0.05] [--rate 200] [--repeats 3]
        [--postgres URL]

The issue's case: ``snapcrawl crawl --out DEST --prune --rate 200`` (no volumes: the account-wide listing)
against a simulator answering in ``--latency`` seconds, run as a user runs it (the CLI, in a subprocess) into a
JSON Lines file, a new SQLite file and a new PostgreSQL table. The median wall time of ``--repeats`` runs each,
each database's time as a multiple of JSON Lines' (the target is at most 1.25x), and the client process's CPU
seconds (on a loaded machine the database runs, which need more CPU, lose more wall time). Without ``--postgres`` a
throwaway server is started from the Debian binaries (``tests/sinks/pgserver.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from snapcrawl.simulator import DEMO_CREDENTIALS
from tests.sinks.pgserver import temporary_server

from ..helpers.harness import SimulatorProcess


def _run(url: str, out: str, *, rate: float) -> tuple[float, float]:
    """Wall and CPU seconds (the client process's) of one ``snapcrawl crawl`` of the whole account into ``out``."""
    argv = [sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", url, "--out", out, "--rate", str(rate)]
    argv += ["--no-progress", *(["--prune"] if "://" in out else [])]
    env = os.environ | {"SCP_ACCESS_KEY": DEMO_CREDENTIALS.access_key, "SCP_SECRET_KEY": DEMO_CREDENTIALS.secret_key}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=600)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"crawl into {out} failed ({done.returncode}): {done.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with temporary_server("bench-account-db") as server:
        yield f"{server}/postgres"


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print one line per destination."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.account_db", description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer (default 0.05)")
    parser.add_argument("--rate", type=float, default=200.0, help="the client's --rate (default 200)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="a database to write into (default: a throwaway server)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="snapcrawl-account-db-") as tmp, _postgres(args.postgres) as pg:
        work = Path(tmp)
        with SimulatorProcess(volumes=args.volumes, workdir=work, faults=["--latency", str(args.latency)]) as sim:
            times: dict[str, list[tuple[float, float]]] = {"jsonl": [], "sqlite": [], "postgres": []}
            for repeat in range(args.repeats):
                times["jsonl"].append(_run(sim.url, str(work / f"out{repeat}.jsonl"), rate=args.rate))
                times["sqlite"].append(_run(sim.url, f"sqlite:///{work / f'inv{repeat}.db'}", rate=args.rate))
                # A new table each run, so that every run inserts (as the first sync of an inventory does).
                times["postgres"].append(_run(sim.url, pg, rate=args.rate))
                with contextlib.suppress(Exception):
                    _drop(pg)
    base = statistics.median(wall for wall, _ in times["jsonl"])
    print(f"account listing, {args.volumes} volumes, latency {args.latency * 1000:.0f} ms, --rate {args.rate:g}:")
    for dest, runs in times.items():
        median = statistics.median(wall for wall, _ in runs)
        cpu = statistics.median(cpu for _, cpu in runs)
        walls = ", ".join(f"{wall:.2f}" for wall, _ in runs)
        print(
            f"  {dest:9} median {median:6.2f} s ({median / base:.2f}x JSON Lines), "
            f"client CPU {cpu:.2f} s; runs: {walls}"
        )


def _drop(url: str) -> None:
    """Drop the inventory and checkpoint tables, so that the next run starts from an empty database."""
    import asyncio  # noqa: PLC0415 - only this cleanup needs it

    import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - the postgres extra

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS snapshots, snapcrawl_crawls, snapcrawl_progress, snapcrawl_ranges, snapcrawl_runs"
            )
        finally:
            await conn.close()

    asyncio.run(drop())


if __name__ == "__main__":
    main()
