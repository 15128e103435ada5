"""The public surface: explicit, sorted and importable."""

from __future__ import annotations

import snapcrawl
import snapcrawl.simulator


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_importable() -> None:
    """Every name in __all__ exists, and __all__ is sorted constants, classes, functions."""
    for module in (snapcrawl, snapcrawl.simulator):
        assert module.__all__ == sorted(module.__all__, key=_isort_key)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_objects_are_exported() -> None:
    """Public classes, functions and constants in the package namespace are all listed in __all__."""
    public = {
        name
        for name, value in vars(snapcrawl).items()
        if not name.startswith("_") and not isinstance(value, type(snapcrawl)) and name != "annotations"
    }
    assert public == set(snapcrawl.__all__)
