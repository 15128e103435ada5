"""Benchmarks of snapcrawl against its simulator: ``python -m benchmarks [--quick] [--only NAME ...] [--json PATH]``.

The simulator runs in a subprocess pinned to CPU 0, each client in its own subprocess pinned to CPU 1, so both
sides' CPU time can be read separately. Modules:

- ``_runner``: the measurements, the table and the JSON report (``__main__`` calls it).
- ``_harness``: pinned subprocesses with timeouts, CPU time from ``/proc``, the simulator subprocess.
- ``_timed``: runs one client after its imports and writes its elapsed time, CPU time and counts as JSON;
  optionally under pyinstrument.
- ``naive``: the baseline, a crawler written by hand the obvious way.
- ``ceiling``: the least work that does the job on the same stack (aiohttp + msgspec).
- ``drive``: snapcrawl as a library, with request timestamps (steady-state rate, requests in flight).
- ``_profile``: turns a pyinstrument session into CPU time per request, by library and by snapcrawl function.
- ``ratelimit``: rate-limit accuracy, simulator and client in one process.
- ``quota``: the share of a token-bucket quota each limiter uses, simulator in its own process
  (``python -m benchmarks.quota``; ``--model`` on the fake-clock model); ``_cubic`` is its baseline limiter.
"""
