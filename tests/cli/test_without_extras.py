"""The CLI starts with the core dependencies only: the README's first command installs no extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Importing any of these raises ImportError, as on a machine where only `pip install .` ran.
EXTRAS = ("hdrh", "matplotlib", "asyncpg", "redis", "opentelemetry", "shtab", "uvloop")

PROGRAM = f"""
import sys
for name in {EXTRAS!r}:
    sys.modules[name] = None  # import fails, as when the extra is not installed
from snapcrawl.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["--version"], ["demo", "--help"], ["crawl", "--help"], ["bench", "--help"]])
def test_the_cli_starts_without_any_extra(argv: list[str]) -> None:
    """Every command's parser is built at start-up, so no module it imports may need an extra."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and program
        [sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_demo_runs_without_any_extra(tmp_path: object) -> None:
    """`snapcrawl demo`, the README's first command, crawls with the core dependencies alone."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and program
        [sys.executable, "-c", PROGRAM, "demo", "--volume-count", "20", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
