"""Fixtures of the simulator's tests: a keep-alive client session and a signed client of the shared simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from snapcrawl.simulator import Simulator
from tests.simulator.helpers import Api, demo_signer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A keep-alive client session for one test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(session: aiohttp.ClientSession, simulator: Simulator) -> Api:
    """A client of the shared simulator, signing for API version 1.3."""
    return Api(session, simulator.url, demo_signer())
