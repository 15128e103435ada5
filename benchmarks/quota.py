"""``python -m benchmarks.quota``, the command the docs of 0.3 cite: runs :mod:`benchmarks.studies.quota`."""

import sys

from .studies.quota import main

if __name__ == "__main__":
    sys.exit(main())
