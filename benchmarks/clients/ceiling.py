"""The ceiling: the least work that does the job on snapcrawl's stack (aiohttp + msgspec).

One pooled session (connector limit = concurrency), HMAC key schedule computed once and copied per request,
typed msgspec decoding into Structs of its own that keep timestamps as the strings the server sent (pinned here, so
that snapcrawl's own model can change without moving the ceiling), one reused encoder writing JSON Lines a page at a
time, ``concurrency`` worker tasks pulling volume ids from one shared iterator. No limiter, no retries, no logging.

It sends the very requests snapcrawl sends, so that the two do equal work: marker paging with ``limit`` and
``with_count=true``, ending on an empty or short page (as snapcrawl's walk does: ``count`` goes stale while data
changes), so a volume whose count is a multiple of the page size costs one empty page here too.

    python -m benchmarks.clients.ceiling --endpoint URL --volumes FILE --out FILE [--page-size 100] [--concurrency 64]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sys
import time
from collections.abc import Iterable, Sequence
from typing import BinaryIO
from urllib.parse import quote_plus

import aiohttp
import msgspec
from yarl import URL

from snapcrawl import DEFAULT_API_VERSION

from .naive import Counts, client_main, run_client

__all__ = ["StringsPage", "StringsSnapshot", "crawl", "main", "run"]


class StringsSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """snapcrawl's Snapshot fields, timestamps left as strings: the least work that still checks the shape."""

    id: str
    volume_id: str
    size: int
    created_at: str
    updated_at: str | None = None
    status: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, object] | str | None = None
    user_id: str | None = None


class StringsPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of :class:`StringsSnapshot` (the in-process floor of ``benchmarks.studies.own_cpu`` decodes it too)."""

    snapshots: list[StringsSnapshot]
    count: int | None = None


_decoder = msgspec.json.Decoder(StringsPage)
_encoder = msgspec.json.Encoder()


async def crawl(
    endpoint: str,
    volume_ids: Iterable[str],
    out: BinaryIO,
    *,
    access_key: str,
    secret_key: str,
    page_size: int = 100,
    concurrency: int = 64,
) -> Counts:
    """Write every snapshot of ``volume_ids`` to ``out`` as JSON Lines."""
    counts = Counts()
    key = hmac.new(secret_key.encode(), digestmod=hashlib.sha256)
    suffix = f"{access_key}Openapi".encode()  # access key + account id (none) + client type
    base_headers = {
        "Scp-Accesskey": access_key,
        "Scp-ClientType": "Openapi",
        "Scp-Api-Version": f"virtualserver {DEFAULT_API_VERSION}",
        "Accept-Language": "en-US",
        "Accept": "application/json",
    }
    prefix = f"{endpoint}/v1/snapshots?limit={page_size}"  # then marker, volume_id, with_count: sorted keys
    write, encode_lines, decode = out.write, _encoder.encode_lines, _decoder.decode
    shared_ids = iter(volume_ids)

    async def worker(session: aiohttp.ClientSession) -> None:
        for volume_id in shared_ids:
            rest = f"&volume_id={quote_plus(volume_id, safe='')}&with_count=true"
            marker = ""
            while True:
                url = f"{prefix}{marker}{rest}"
                timestamp = str(int(time.time() * 1000))
                mac = key.copy()
                mac.update(f"GET{url}{timestamp}".encode())
                mac.update(suffix)
                headers = base_headers.copy()
                headers["Scp-Timestamp"] = timestamp
                headers["Scp-Signature"] = base64.b64encode(mac.digest()).decode("ascii")
                async with session.get(URL(url, encoded=True), headers=headers) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status} for {url}: {body[:200]!r}")
                page = decode(body)
                counts.requests += 1
                snapshots = page.snapshots
                if snapshots:
                    write(encode_lines(snapshots))
                    counts.snapshots += len(snapshots)
                if len(snapshots) < page_size:
                    break
                marker = f"&marker={quote_plus(snapshots[-1].id, safe='')}"

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker(session))
    return counts


def run(argv: Sequence[str]) -> Counts:
    """Parse ``argv`` and crawl (credentials from ``SCP_ACCESS_KEY``/``SCP_SECRET_KEY``, else the demo ones)."""
    return run_client("python -m benchmarks.clients.ceiling", __doc__, argv, crawl, binary=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Crawl and print a one-line summary to stderr."""
    return client_main("ceiling", run, argv)


if __name__ == "__main__":
    sys.exit(main())
