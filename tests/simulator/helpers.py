"""A minimal signed client of a simulator, sending URLs verbatim, shared by the simulator's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import aiohttp
import msgspec
import pytest
import yarl
from multidict import CIMultiDictProxy

from snapcrawl._signing import Signer, encode_query
from snapcrawl.simulator import DEMO_CREDENTIALS, Dataset


class Reply(NamedTuple):
    """What came back for one request."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return msgspec.json.decode(self.body)


class Api:
    """A minimal signed client of one simulator, sending URLs verbatim."""

    def __init__(self, session: aiohttp.ClientSession, url: str, signer: Signer | None) -> None:
        self.session = session
        self.url = url
        self.signer = signer

    async def get(
        self,
        params: Mapping[str, str] | str | None = None,
        *,
        signer: Signer | None = None,
        headers: Mapping[str, str | None] | None = None,
        path: str = "/v1/snapshots",
        method: str = "GET",
    ) -> Reply:
        """Send one request; ``headers`` override the signed ones (``None`` removes one)."""
        query = params if isinstance(params, str) else encode_query(params or {})
        url = f"{self.url}{path}?{query}" if query else f"{self.url}{path}"
        signer = signer or self.signer
        sent = signer.headers(method, url) if signer is not None else {}
        for name, value in (headers or {}).items():
            if value is None:
                sent.pop(name, None)
            else:
                sent[name] = value
        async with self.session.request(method, yarl.URL(url, encoded=True), headers=sent) as response:
            return Reply(response.status, response.headers, await response.read())

    async def page(self, **params: str) -> dict[str, Any]:
        """One page that must succeed."""
        reply = await self.get(params)
        assert reply.status == 200, reply.body
        page: dict[str, Any] = reply.json()
        return page

    async def walk(self, **params: str) -> tuple[list[dict[str, Any]], int]:
        """Every snapshot of a listing by following markers, and the number of requests it took."""
        limit = int(params.get("limit", "20"))
        items: list[dict[str, Any]] = []
        requests = 0
        while True:
            marker = {"marker": items[-1]["id"]} if items else {}
            page = await self.page(**params, **marker)
            requests += 1
            items.extend(page["snapshots"])
            if len(page["snapshots"]) < limit:
                return items, requests


def demo_signer(**kwargs: Any) -> Signer:
    """A signer with the demo credentials for API version 1.3 unless told otherwise."""
    return Signer(DEMO_CREDENTIALS, **{"api_version": "1.3", **kwargs})


def biggest_volume(dataset: Dataset) -> str:
    """The volume with the most snapshots."""
    return max(dataset.volume_ids, key=dataset.count)


def empty_volume(dataset: Dataset) -> str:
    """A volume without snapshots."""
    return next(volume for volume in dataset.volume_ids if dataset.count(volume) == 0)


async def wait_for(condition: Callable[[], bool], polls: int = 4000) -> None:
    """Poll ``condition`` until it holds: the server counts on its own thread (up to ``polls`` x 5 ms)."""
    for _ in range(polls):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the condition never held")
