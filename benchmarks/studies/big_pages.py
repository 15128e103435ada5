"""Peak RSS of ``snapcrawl crawl`` against a hostile server whose every page is 30 MiB, at the default concurrency.

    python -m benchmarks.studies.big_pages [--volumes 128] [--page-mib 30] [--concurrency 64] [--json FILE]

Every volume of a ``snapcrawl simulate`` subprocess (``--huge-volume``, ``--huge-body-bytes``) answers one valid
page padded past ``--page-mib`` MiB; the crawl writes them to a JSON Lines file in a temporary directory. Each
body is within the per-body cap (32 MiB), so nothing fails: without a crawler-wide budget, 64 requests in flight
could hold 64 bodies at once (about 2 GiB). With the budget (128 MiB by default, plus the oldest reader's body,
plus the one page being decoded and written), peak RSS stays under :data:`BOUND_MB` whatever the concurrency.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from snapcrawl.simulator import Dataset

from ..helpers.harness import CLIENT_CPUS, SimulatorProcess, run_pinned

__all__ = ["BOUND_MB", "main"]

#: The documented bound on the crawl's peak RSS here: the 128 MiB budget, one body past it, the page being
#: decoded and the one being written (each about 30 MiB), and the interpreter itself.
BOUND_MB: Final = 400.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement; exit 1 if the peak passes :data:`BOUND_MB`."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.big_pages", description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=128, help="volumes, each one huge page (default 128)")
    parser.add_argument("--page-mib", type=int, default=30, help="MiB per page (default 30)")
    parser.add_argument("--concurrency", type=int, default=64, help="the crawl's --concurrency (default 64)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    ids = Dataset(args.volumes, 0).volume_ids
    faults = ["--huge-body-bytes", str(args.page_mib * 1024 * 1024)]
    for volume_id in ids:
        faults += ["--huge-volume", volume_id]
    with tempfile.TemporaryDirectory(prefix="snapcrawl-big-pages-") as tmp:
        workdir = Path(tmp)
        with SimulatorProcess(volumes=args.volumes, workdir=workdir, faults=faults) as sim:
            out = workdir / "out.jsonl"
            cmd = [
                sys.executable, "-m", "snapcrawl.cli", "crawl", "--endpoint", sim.url, "--volumes",
                str(sim.volume_file), "--out", str(out), "--concurrency", str(args.concurrency), "--no-progress",
            ]  # fmt: skip
            proc = run_pinned(cmd, cpus=CLIENT_CPUS, timeout=600, logs=workdir / "crawl")
            written = out.stat().st_size if out.exists() else 0
    figures = {
        "volumes": args.volumes,
        "page_mib": args.page_mib,
        "concurrency": args.concurrency,
        "exit": proc.returncode,
        "written_mb": round(written / 1e6, 1),
        "peak_rss_mb": round(proc.peak_rss_mb, 1),
        "bound_mb": BOUND_MB,
        "wall_s": round(proc.wall, 1),
    }
    print(
        f"big pages: {args.volumes} pages of {args.page_mib} MiB at --concurrency {args.concurrency}: "
        f"peak RSS {proc.peak_rss_mb:.0f} MB (bound {BOUND_MB:.0f} MB), {written / 1e6:.0f} MB written "
        f"in {proc.wall:.1f} s, exit {proc.returncode}"
    )
    if not proc.ok:
        print(proc.stderr_tail[-2000:], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if proc.ok and proc.peak_rss_mb < BOUND_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
