"""The public surface: explicit, sorted, importable, documented, and free of private internals."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

#: Every public package and module: what a user may import, and what the API reference renders.
PUBLIC = (
    "snapcrawl",
    "snapcrawl.bench",
    "snapcrawl.limits",
    "snapcrawl.otel",
    "snapcrawl.queue",
    "snapcrawl.signing",
    "snapcrawl.simulator",
    "snapcrawl.sinks",
    "snapcrawl.transport",
)

#: Internals that left a public ``__all__`` in 0.3: they must not come back by accident.
WITHDRAWN = {
    "snapcrawl": {
        "API_VERSIONS",
        "ApiVersion",
        "Response",
        "Signer",
        "SnapshotPage",
        "VolumeProgress",
        "encode_query",
        "make_signature",
    },
    "snapcrawl.limits": {"RateDiscovery", "TokenBucket", "read_quota"},
}


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_importable(name: str) -> None:
    """Every name in __all__ exists, once, and __all__ is sorted constants, classes, functions."""
    module = _module(name)
    exported: list[str] = module.__all__
    assert exported == sorted(exported, key=_isort_key)
    assert len(set(exported)) == len(exported)
    for member in exported:
        assert hasattr(module, member), f"{name}.{member}"


@pytest.mark.parametrize("name", PUBLIC)
def test_public_objects_are_exported(name: str) -> None:
    """Every public class and function in a public namespace is listed in __all__: nothing is public by accident."""
    module = _module(name)
    # A package's namespace is what it re-exports; a plain module's is what it defines (not what it imports).
    package = hasattr(module, "__path__")
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and not inspect.ismodule(value)
        and (
            (package and member.isupper() and member != "TYPE_CHECKING")
            or ((inspect.isclass(value) or inspect.isfunction(value)) and (package or value.__module__ == name))
        )
        and getattr(value, "__module__", name).startswith("snapcrawl")
    }
    assert public <= set(module.__all__), sorted(public - set(module.__all__))


@pytest.mark.parametrize("name", PUBLIC)
def test_exports_are_documented(name: str) -> None:
    """The module and every class and function it exports has a docstring, which the API reference renders."""
    module = _module(name)
    assert inspect.getdoc(module), name
    for member in module.__all__:
        value = getattr(module, member)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{name}.{member} has no docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_no_private_internals_leak(name: str) -> None:
    """An export is public where it is defined: in its private module's own __all__, and from this package down.

    A helper that its own module keeps private, or a name reached up from a sibling's private module, is not part
    of the API.
    """
    module = _module(name)
    package = name if hasattr(module, "__path__") else name.rpartition(".")[0]
    for member in module.__all__:
        assert not member.startswith("_"), f"{name}.{member}"
        value = getattr(module, member)
        origin = getattr(value, "__module__", None)
        if not (inspect.isclass(value) or inspect.isfunction(value)) or origin is None:
            continue
        assert origin.startswith(package), f"{name}.{member} comes from {origin}, outside {package}"
        if _is_private(origin) and origin != name:
            assert member in getattr(_module(origin), "__all__", ()), f"{name}.{member}: {origin} keeps it private"


@pytest.mark.parametrize(("name", "withdrawn"), sorted(WITHDRAWN.items()))
def test_withdrawn_internals_stay_out(name: str, withdrawn: set[str]) -> None:
    """Signing helpers, the transport's tuple, wire models and the limiter's parts are not exported from here."""
    module = _module(name)
    assert not withdrawn & set(module.__all__)
    assert not [member for member in withdrawn if hasattr(module, member)]


def test_withdrawn_names_live_where_they_belong() -> None:
    """What left the top level is still importable from its own public or private module."""
    from snapcrawl._config import API_VERSIONS, ApiVersion  # noqa: PLC0415
    from snapcrawl._models import SnapshotPage  # noqa: PLC0415
    from snapcrawl.limits._headers import read_quota  # noqa: PLC0415
    from snapcrawl.limits._policy import RateDiscovery  # noqa: PLC0415
    from snapcrawl.limits.local import TokenBucket  # noqa: PLC0415
    from snapcrawl.signing import Signer, encode_query, make_signature  # noqa: PLC0415
    from snapcrawl.sinks import VolumeProgress  # noqa: PLC0415
    from snapcrawl.transport import Response  # noqa: PLC0415

    assert all((API_VERSIONS, ApiVersion, SnapshotPage, read_quota, RateDiscovery, TokenBucket))
    assert all((Signer, encode_query, make_signature, VolumeProgress, Response))
