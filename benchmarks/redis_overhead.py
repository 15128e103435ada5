"""``python -m benchmarks.redis_overhead``, the command the docs of 0.3 cite: runs
:mod:`benchmarks.studies.redis_overhead`."""

import sys

from .studies.redis_overhead import main

if __name__ == "__main__":
    sys.exit(main())
