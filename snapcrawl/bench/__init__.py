"""``snapcrawl bench``: load-test an SCP endpoint, open or closed loop, or find the highest rate it sustains.

::

    report = await snapcrawl.bench.run(BenchConfig(endpoint=url, rate=500, duration=10))
    print(report.latency_ms.p99, report.achieved_rps)

Several processes: ``await run_workers(dataclasses.replace(config, workers=4))``; saved runs (``--save``,
``--json``) merge with ``merge(load_reports(paths))``. Needs the ``bench`` extra (hdrhistogram); ``plot``
needs the ``plot`` extra (matplotlib).
"""

from ._client import Live
from ._config import (
    DEFAULT_BUDGET,
    DEFAULT_DURATION,
    DEFAULT_MAX_FAILED,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_RATE,
    DEFAULT_STEP_DURATION,
    BenchConfig,
)
from ._merge import load_reports, merge, rejudge
from ._plot import plot, require_matplotlib
from ._ramp import Profile
from ._report import BenchReport, Latency, Second, Step, ThresholdResult, decode_report, encode_report
from ._run import LAG_WARNING_MS, run
from ._summary import summary
from ._thresholds import Threshold
from ._workers import run_workers

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_DURATION",
    "DEFAULT_MAX_FAILED",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_RATE",
    "DEFAULT_STEP_DURATION",
    "LAG_WARNING_MS",
    "BenchConfig",
    "BenchReport",
    "Latency",
    "Live",
    "Profile",
    "Second",
    "Step",
    "Threshold",
    "ThresholdResult",
    "decode_report",
    "encode_report",
    "load_reports",
    "merge",
    "plot",
    "rejudge",
    "require_matplotlib",
    "run",
    "run_workers",
    "summary",
]
