"""Benchmarks of snapcrawl against its simulator, run by hand, in four kinds of module.

    python -m pip install '.[fast,benchmarks]'
    python -m benchmarks [--quick] [--only NAME ...] [--json PATH] [--baseline DIR]

- :mod:`benchmarks.suite`: the suite ``python -m benchmarks`` runs. The simulator runs in a subprocess pinned to
  CPU 0, each client in its own subprocess pinned to CPU 1, so both sides' CPU time can be read separately. One
  module per measurement (``measure`` and ``render``): ``throughput`` (CPU-bound throughput of the CLI against the
  naive client and the ceiling; ``--baseline DIR`` adds another checkout's CLI), ``latency`` (latency hiding),
  ``rate_accuracy`` (the achieved rate and the busiest second under ``--rate``/``--burst``), ``overhead`` (CPU per
  request and where it goes, with pyinstrument) and ``memory`` (peak RSS). Its machinery: ``_main`` (the command),
  ``_bench`` (plan, targets, a run's state), ``_clients`` (one client run on the client CPU), ``_timed`` (runs a
  client after its imports, optionally under pyinstrument), ``_profile`` and ``_report``.
- :mod:`benchmarks.clients`: what the suite and the studies set snapcrawl against, or drive it with: ``naive`` (a
  crawler written by hand the obvious way), ``ceiling`` (the least work that does the same job on the same stack),
  ``drive`` (snapcrawl as a library, with request timestamps), ``ratelimit`` (snapcrawl and the simulator in one
  process) and ``_cubic`` (the limiter before rate discovery).
- :mod:`benchmarks.studies`: one question each, run on their own (``python -m benchmarks.studies.NAME``):
  ``quota``, ``redis_overhead``, ``sinks``, ``account_db``, ``big_pages``, ``bench_capacity``, ``own_cpu`` and
  ``mutation``. ``python -m benchmarks.quota`` and ``python -m benchmarks.redis_overhead`` still run theirs.
- :mod:`benchmarks.helpers`: what several kinds share: ``harness`` (pinned subprocesses, CPU time from ``/proc``,
  the simulator subprocess) and ``import_graph`` (the picture of ``snapcrawl/``'s imports in the docs).
"""
