"""snapcrawl's own CPU per request, without the network: a crawl through a canned in-memory transport.

aiohttp's share of a request (about 100 µs) is the same for every client and swamps snapcrawl's own on a busy
machine. Here the transport answers from memory, so the process's CPU time per request is snapcrawl's own code
plus msgspec decoding; the *floor* does the least work the same requests need in the same process (sign with a
copied HMAC state, decode into the least-work client's Structs, which keep timestamps as strings), and the
difference is snapcrawl's own cost. Each checkout runs in its own subprocess, interleaved round by round, and the
minimum over repeats is kept, which other load on the machine disturbs far less than wall time.

    python -m benchmarks.studies.own_cpu [--baseline DIR] [--rounds 5] [--volumes 4000] [--per-page 8]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["main"]

_VOLUME_TAIL = "-5b6d-4e7f-9a0b-1c2d3e4f5a6b"


def _bodies(volumes: int, per_page: int) -> tuple[list[str], dict[str, bytes]]:
    """Volume ids and one page of ``per_page`` snapshots for each (1 in 20 timestamps naive, as the simulator)."""
    ids = [f"{n:08x}{_VOLUME_TAIL}" for n in range(volumes)]
    bodies = {}
    for n, volume_id in enumerate(ids):
        snapshots = [
            {
                "id": f"{volume_id}-{i:04d}",
                "volume_id": volume_id,
                "size": 10,
                "created_at": "2024-01-02T03:04:05" + ("" if (n + i) % 20 == 0 else "Z"),
                "updated_at": "2024-01-02T03:04:05Z",
                "status": "available",
                "name": f"snap-{i}",
                "description": None,
                "metadata": {"team": "sre"},
                "user_id": "u-1",
            }
            for i in range(per_page)
        ]
        bodies[volume_id] = msgspec.json.encode({"snapshots": snapshots, "count": per_page})
    return ids, bodies


def _child(kind: str, volumes: int, per_page: int, repeats: int) -> float:
    """CPU µs per request of ``kind`` (``snapcrawl`` or ``floor``), the minimum over ``repeats`` crawls."""
    import logging  # noqa: PLC0415

    import anyio  # noqa: PLC0415
    import structlog  # noqa: PLC0415

    from snapcrawl import Crawler, Credentials  # noqa: PLC0415
    from snapcrawl.transport import Response  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ids, bodies = _bodies(volumes, per_page)
    empty = msgspec.json.encode({"snapshots": [], "count": per_page})

    def answer(url: str) -> bytes:
        if "marker=" in url:
            return empty
        start = url.index("volume_id=") + len("volume_id=")
        return bodies[url[start : start + 8 + len(_VOLUME_TAIL)]]

    class Canned:
        async def get(self, url: str, headers: dict[str, str]) -> Response:
            await anyio.lowlevel.checkpoint()
            return Response(200, answer(url))

        async def aclose(self) -> None:
            return None

    async def crawl() -> int:
        credentials = Credentials(access_key="ak", secret_key="sk")  # noqa: S106 - a canned server checks nothing
        async with Crawler(endpoint="http://127.0.0.1:9", credentials=credentials, transport=Canned()) as crawler:
            result = await crawler.crawl_into(ids, lambda page: None)
        return result.stats.requests

    # The least-work client's own Structs: the floor decodes exactly as it does. Imported here, not at the top:
    # a --baseline child runs another checkout, whose benchmarks may differ (the floor always runs this one).
    from benchmarks.clients.ceiling import StringsPage  # noqa: PLC0415

    decode = msgspec.json.Decoder(StringsPage).decode
    key = hmac.new(b"sk", digestmod=hashlib.sha256)

    async def floor() -> int:
        requests = 0

        async def worker(shared: Any) -> None:
            nonlocal requests
            for volume_id in shared:
                url = f"http://127.0.0.1:9/v1/snapshots?limit=100&volume_id={volume_id}&with_count=true"
                while True:
                    state = key.copy()
                    state.update(f"GET{url}{int(time.time() * 1000)}akOpenapi".encode())
                    state.digest()
                    await anyio.lowlevel.checkpoint()
                    page = decode(answer(url))
                    requests += 1
                    if len(page.snapshots) < 100:
                        break
                    url += f"&marker={page.snapshots[-1].id}"

        shared = iter(ids)
        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(worker, shared)
        return requests

    run = crawl if kind == "snapcrawl" else floor
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        requests = anyio.run(run)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


def _measure(source: Path | None, kind: str, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, __file__, "--child", kind, "--volumes", str(args.volumes), "--per-page", str(args.per_page)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    """Interleave the floor, this checkout and (with ``--baseline``) another one; print the medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.own_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout of snapcrawl, measured alongside")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--volumes", type=int, default=4000)
    parser.add_argument("--per-page", type=int, default=8, help="snapshots per volume, all on one page (<= 99)")
    parser.add_argument("--child", choices=("snapcrawl", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(f"{_child(args.child, args.volumes, args.per_page, repeats=3):.2f}")
        return 0
    here = Path(__file__).resolve().parents[2]
    clients: dict[str, tuple[Path | None, str]] = {"floor": (here, "floor"), "snapcrawl": (here, "snapcrawl")}
    if args.baseline is not None:
        clients["baseline"] = (args.baseline.resolve(), "snapcrawl")
    results: dict[str, list[float]] = {name: [] for name in clients}
    for round_ in range(args.rounds):
        for name, (source, kind) in clients.items():
            results[name].append(_measure(source, kind, args))
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in results.items()), file=sys.stderr)
    floor = statistics.median(results["floor"])
    print(f"{args.volumes} volumes, {args.per_page} snapshots each, one page per volume; CPU µs per request")
    for name, values in results.items():
        value = statistics.median(values)
        extra = "" if name == "floor" else f"  own code {value - floor:5.1f} µs"
        print(f"  {name:10s} {value:6.1f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
