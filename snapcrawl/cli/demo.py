"""``snapcrawl demo``: crawl the built-in simulator, started in-process."""

from __future__ import annotations

import argparse
import sys

from .._crawler import Crawler
from ..sinks import DEFAULT_TABLE
from ._common import CONCURRENCY, SEED, VOLUMES, DeprecatedAlias, add_loop_option
from ._crawling import add_summary_option, run_crawl

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command."""
    demo = commands.add_parser("demo", help="crawl the built-in simulator, started in-process")
    demo.add_argument(
        "--volume-count", dest="volumes", type=VOLUMES, default=3000, metavar="N", help="simulated volumes"
    )
    demo.add_argument("--volumes", dest="volumes", type=VOLUMES, action=DeprecatedAlias, use="--volume-count")
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--out", default="snapcrawl-demo.jsonl", metavar="FILE", help="where the snapshots go")
    demo.add_argument("--concurrency", type=CONCURRENCY, default=64, metavar="N")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--no-faults", action="store_true", help="a perfect server: no latency, no 503s")
    add_loop_option(demo)
    demo.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    demo.add_argument("--log-json", action="store_true")
    add_summary_option(demo)
    demo.set_defaults(run=_cmd_demo)


async def _cmd_demo(args: argparse.Namespace) -> int:
    from ..simulator import Faults, Simulator  # noqa: PLC0415 - only the demo and simulate need the server side

    # A realistic server by default: some latency, and a few 503s for the retries to absorb.
    faults = Faults() if args.no_faults else Faults(latency=(0.005, 0.03), error_rate=0.01)
    async with Simulator(volumes=args.volumes, seed=args.seed, faults=faults) as sim:
        print(f"snapcrawl: demo simulator at {sim.url} with {args.volumes} volumes", file=sys.stderr)
        crawler = Crawler(endpoint=sim.url, credentials=sim.credentials, concurrency=args.concurrency)
        args.name = args.sort = args.state = None
        args.table, args.prune, args.resume_finished = DEFAULT_TABLE, False, False
        return await run_crawl(crawler, sim.dataset.volume_ids, args, total=len(sim.dataset.volume_ids))
