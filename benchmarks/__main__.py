"""``python -m benchmarks``: the suite, see :mod:`benchmarks.suite._main`."""

import sys

from .suite._main import main

sys.exit(main())
