"""snapcrawl.bench's public surface: explicit, sorted and importable; the command is registered."""

from __future__ import annotations

import snapcrawl.bench
from snapcrawl.cli import build_parser


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_importable_and_complete() -> None:
    """Every name in __all__ exists, the list is sorted, and every public name is in it."""
    module = snapcrawl.bench
    assert module.__all__ == sorted(module.__all__, key=_isort_key)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(module)) and name != "annotations"
    }
    assert public == set(module.__all__)


def test_bench_command_is_registered() -> None:
    """`snapcrawl bench` parses and dispatches to its own run function."""
    args = build_parser().parse_args(["bench", "--rate", "5"])
    assert args.command == "bench"
    assert args.run.__module__ == "snapcrawl.cli.bench"
