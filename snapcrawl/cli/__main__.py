"""``python -m snapcrawl.cli``."""

import sys

from . import main

sys.exit(main())
