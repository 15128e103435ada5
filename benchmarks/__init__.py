"""Benchmarks of snapcrawl against its simulator.

    python -m pip install '.[fast,benchmarks]'
    python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--baseline DIR]

The simulator runs in a subprocess pinned to CPU 0, each client in its own subprocess pinned to CPU 1, so both
sides' CPU time can be read separately. What is measured, one module each (``measure`` and ``render``):

- ``throughput``: CPU-bound throughput of the CLI against the naive client and the ceiling, interleaved rounds
  (``--baseline DIR`` adds another checkout's CLI, e.g. an older core).
- ``latency``: latency hiding, requests/s against the bound concurrency / latency.
- ``rate_accuracy``: the achieved rate and the busiest one-second window under ``--rate``/``--burst``.
- ``overhead``: CPU per request and where it goes (pyinstrument, from the ``benchmarks`` extra).
- ``memory``: peak RSS crawling a small and a large number of volumes.

The clients: ``naive`` (a crawler written by hand the obvious way), ``ceiling`` (the least work that does the
same job on the same stack, aiohttp + msgspec), ``drive`` (snapcrawl as a library, with request timestamps),
``ratelimit`` (snapcrawl and the simulator in one process). The machinery: ``_main`` (the command), ``_bench``
(plan, targets, a run's state), ``_clients`` (one client run on the client CPU), ``_harness`` (pinned
subprocesses, CPU time from ``/proc``, the simulator subprocess), ``_timed`` (runs a client after its imports,
optionally under pyinstrument), ``_profile`` (a pyinstrument session by library and function), ``_report``.

Run on their own: ``quota`` (the share of a token-bucket quota each limiter uses, simulator in its own process;
``python -m benchmarks.quota``, ``--model`` on the fake-clock model; ``_cubic`` is its baseline limiter) and
``sinks`` (the destinations' write cost).
"""
