"""Rate-limit accuracy: snapcrawl with ``rate_limit``/``burst`` against a simulator in this same process.

    python -m benchmarks.clients.ratelimit --volumes N --rate 300 --burst 10 --out FILE --report FILE

The simulator (``run_in_thread``) timestamps every request's arrival, so the achieved rate and the busiest
one-second window are measured where the quota would be enforced.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from snapcrawl.simulator import run_in_thread

from .drive import configure_logging, crawl

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl the simulator's volumes at the given rate and write what the server saw as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients.ratelimit", description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()
    with run_in_thread(volumes=args.volumes, seed=args.seed) as sim:
        sim.stats.reset()
        result = anyio.run(
            lambda: crawl(
                sim.url,
                sim.dataset.volume_ids,
                args.out,
                credentials=sim.credentials,
                concurrency=args.concurrency,
                page_size=args.page_size,
                rate=args.rate,
                burst=args.burst,
                timestamps=True,
            )
        )
        arrivals = sim.stats.arrivals[:]
        server = sim.stats.as_dict()
        result["server_requests"] = server["requests"]
        result["by_status"] = server["by_status"]
        result["max_in_1s_window"] = server["max_in_1s_window"]
        result["total_snapshots"] = sim.dataset.total
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    result["arrival_span"] = span
    result["server_rate"] = (len(arrivals) - 1) / span if span > 0 else 0.0
    args.report.write_text(json.dumps(result), encoding="utf-8")
    return 0 if not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
