"""Shared fixtures: one simulator for the whole session, reset before every test that uses it; a Redis server
(:mod:`tests.redis_server`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from aioresponses import aioresponses
from hypothesis import HealthCheck, settings

from snapcrawl.simulator import NO_FAULTS, Simulator, run_in_thread
from snapcrawl.transport import AiohttpTransport
from tests.fakes import Aioresponses

#: Servers other than the simulator, as fixtures any test folder can use.
pytest_plugins = ("tests.redis_server",)

# Hypothesis' default 200 ms deadline (and its too-slow health check) fail healthy examples on a busy 2-core
# machine: the per-test timeout bounds runtime instead. HYPOTHESIS_PROFILE picks another registered profile.
settings.register_profile("snapcrawl", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "snapcrawl"))


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """A simulator of 300 volumes (seed 7) on its own thread and event loop, shared by the session."""
    with run_in_thread(volumes=300, seed=7) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _reset_simulator(request: pytest.FixtureRequest) -> None:
    """Give each test that uses the shared simulator no faults and fresh stats."""
    if "simulator" in request.fixturenames:
        sim: Simulator = request.getfixturevalue("simulator")
        sim.faults = NO_FAULTS
        sim.stats.reset()


@pytest.fixture(autouse=True)
def _quiet_structlog() -> Iterator[None]:
    """Keep structlog's global configuration and the ``snapcrawl`` logger per test, reset afterwards."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()
    logger = logging.getLogger("snapcrawl")  # the CLI configures it in-process: undo that too
    for handler in [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


@pytest.fixture
def env(simulator: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Simulator:
    """Point the CLI at the shared simulator through the environment, with no ~/.scpconf to fall back on."""
    for name in list(os.environ):
        if name.startswith("SCP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SCP_ENDPOINT", simulator.url)
    monkeypatch.setenv("SCP_ACCESS_KEY", simulator.credentials.access_key)
    monkeypatch.setenv("SCP_SECRET_KEY", simulator.credentials.secret_key)
    return simulator


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses for the narrow tests of the aiohttp seam (its fake answers need the real transport)."""
    with Aioresponses() as mock:
        yield mock


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    """A real transport with a short timeout, closed after the test."""
    transport = AiohttpTransport(timeout=5)
    yield transport
    await transport.aclose()
