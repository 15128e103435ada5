"""The baseline: a crawler written by hand the obvious way.

aiohttp, one task per volume under ``asyncio.gather``, an ``asyncio.Semaphore`` for concurrency, ``json.loads``
into dicts, ``json.dumps`` per line, marker paging until a short page, no retries. It signs like SCP's SDK
(with snapcrawl's :func:`~snapcrawl.signing.make_signature`, since the simulator checks every signature).

    python -m benchmarks.clients.naive --endpoint URL --volumes FILE --out FILE [--page-size 100] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

import aiohttp
import yarl

from snapcrawl import DEFAULT_API_VERSION
from snapcrawl.signing import encode_query, make_signature
from snapcrawl.simulator import DEMO_CREDENTIALS

__all__ = ["Counts", "client_main", "client_parser", "crawl", "credentials_from_env", "main", "run", "run_client"]


@dataclasses.dataclass(slots=True)
class Counts:
    """What a crawl did."""

    requests: int = 0
    snapshots: int = 0


#: A hand-written client's crawl: ``crawl(endpoint, volume_ids, out, *, access_key, secret_key, page_size,
#: concurrency)``.
Crawl = Callable[..., Coroutine[Any, Any, Counts]]


async def crawl(
    endpoint: str,
    volume_ids: list[str],
    out: TextIO,
    *,
    access_key: str,
    secret_key: str,
    page_size: int = 100,
    concurrency: int = 64,
) -> Counts:
    """Write every snapshot of ``volume_ids`` to ``out``, one JSON object a line."""
    counts = Counts()
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def list_volume(volume_id: str) -> None:
            marker = None
            while True:
                params = {"volume_id": volume_id, "limit": str(page_size)}
                if marker is not None:
                    params["marker"] = marker
                url = f"{endpoint}/v1/snapshots?{encode_query(params)}"
                async with semaphore:
                    timestamp = str(int(time.time() * 1000))
                    headers = {
                        "Scp-Accesskey": access_key,
                        "Scp-Signature": make_signature(
                            method="GET", url=url, timestamp=timestamp, access_key=access_key, secret_key=secret_key
                        ),
                        "Scp-Timestamp": timestamp,
                        "Scp-ClientType": "Openapi",
                        "Scp-Api-Version": f"virtualserver {DEFAULT_API_VERSION}",
                        "Accept-Language": "en-US",
                        "Accept": "application/json",
                    }
                    async with session.get(yarl.URL(url, encoded=True), headers=headers) as response:
                        response.raise_for_status()
                        page = json.loads(await response.read())
                counts.requests += 1
                snapshots = page["snapshots"]
                for snapshot in snapshots:
                    out.write(json.dumps(snapshot) + "\n")
                counts.snapshots += len(snapshots)
                if len(snapshots) < page_size:
                    return
                marker = snapshots[-1]["id"]

        await asyncio.gather(*(list_volume(volume_id) for volume_id in volume_ids))
    return counts


def client_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line shared by the hand-written clients."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--endpoint", required=True, metavar="URL")
    parser.add_argument("--volumes", required=True, metavar="FILE", help="volume ids, one a line")
    parser.add_argument("--out", required=True, metavar="FILE", help="JSON Lines output")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    return parser


def credentials_from_env() -> dict[str, str]:
    """``access_key``/``secret_key`` from ``SCP_ACCESS_KEY``/``SCP_SECRET_KEY``, else the simulator's demo ones."""
    return {
        "access_key": os.environ.get("SCP_ACCESS_KEY", DEMO_CREDENTIALS.access_key),
        "secret_key": os.environ.get("SCP_SECRET_KEY", DEMO_CREDENTIALS.secret_key),
    }


def client_main(name: str, run: Callable[[Sequence[str]], Counts], argv: Sequence[str] | None) -> int:
    """Crawl with ``run`` and print a one-line summary to stderr."""
    started = time.perf_counter()
    counts = run(sys.argv[1:] if argv is None else argv)
    elapsed = time.perf_counter() - started
    print(f"{name}: {counts.snapshots} snapshots, {counts.requests} requests in {elapsed:.2f} s", file=sys.stderr)
    return 0


def run_client(prog: str, doc: str | None, argv: Sequence[str], crawl: Crawl, *, binary: bool) -> Counts:
    """Parse a hand-written client's command line and run its ``crawl`` (credentials from the environment, else
    the demo ones); ``binary`` opens the output for bytes instead of text."""
    args = client_parser(prog, (doc or prog).splitlines()[0]).parse_args(argv)
    with open(args.volumes, encoding="utf-8") as file:
        volume_ids = [line.strip() for line in file if line.strip()]
    with open(args.out, "wb") if binary else open(args.out, "w", encoding="utf-8") as out:
        return asyncio.run(
            crawl(
                args.endpoint.rstrip("/"),
                volume_ids,
                out,
                **credentials_from_env(),
                page_size=args.page_size,
                concurrency=args.concurrency,
            )
        )


def run(argv: Sequence[str]) -> Counts:
    """Parse ``argv`` and crawl (credentials from ``SCP_ACCESS_KEY``/``SCP_SECRET_KEY``, else the demo ones)."""
    return run_client("python -m benchmarks.clients.naive", __doc__, argv, crawl, binary=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl and print a one-line summary to stderr."""
    return client_main("naive", run, argv)


if __name__ == "__main__":
    sys.exit(main())
