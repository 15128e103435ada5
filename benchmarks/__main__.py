"""``python -m benchmarks``: see :mod:`benchmarks._runner`."""

import sys

from ._runner import main

sys.exit(main())
