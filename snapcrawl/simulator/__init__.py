"""A local, strict, deterministic and optionally hostile server of SCP's ``GET /v1/snapshots``.

::

    async with Simulator(volumes=2000, seed=0) as sim:
        ...  # point a client at sim.url, signing with sim.credentials

    with run_in_thread(volumes=2000, faults=Faults(churn=Churn(rate=0.2))) as sim:  # its own thread and loop
        mark = sim.dataset.mark()
        ...  # crawl
        must = sim.dataset.existed_throughout(since=mark)
        may = sim.dataset.ever_existed(since=mark)

Modules, in the order a request meets them: ``server`` (aiohttp app, auth, answers), ``faults`` (what breaks and
when), ``query`` (API versions and the strict query parser), ``dataset`` (the data, churn and its history),
``stats`` (what the server saw), ``cli`` (the ``snapcrawl simulate`` command's run).
"""

from __future__ import annotations

from .dataset import SORT_KEYS, Change, Churn, Dataset
from .faults import NO_FAULTS, Faults
from .query import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .server import DEMO_CREDENTIALS, STATS_PATH, Simulator, run_in_thread
from .stats import Second, Stats

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEMO_CREDENTIALS",
    "MAX_PAGE_SIZE",
    "NO_FAULTS",
    "SORT_KEYS",
    "STATS_PATH",
    "Change",
    "Churn",
    "Dataset",
    "Faults",
    "Second",
    "Simulator",
    "Stats",
    "run_in_thread",
]
