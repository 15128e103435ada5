"""``python -m benchmarks``: see :mod:`benchmarks._main`."""

import sys

from ._main import main

sys.exit(main())
