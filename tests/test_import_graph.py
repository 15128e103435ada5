"""The import graph of snapcrawl/, read with ast by benchmarks/helpers/import_graph.py (which draws
docs/import-graph.png)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.helpers.import_graph import circles, collapse, imports


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Relative, absolute, lazy (inside a function), ``from . import submodule`` and TYPE_CHECKING imports count."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import x\n")
    (package / "a.py").write_text("def f():\n    from .b import y\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import c\n")
    (package / "sub" / "__init__.py").write_text("from . import c\n")
    (package / "sub" / "c.py").write_text("from ..a import f\nimport json\n")
    graph = imports(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.a"},
    }
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert collapse(graph, ["pkg.sub"]) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub"},
        "pkg.sub": {"pkg.a"},
    }


def test_no_import_circle() -> None:
    """No module of snapcrawl/ imports, however indirectly, a module that imports it."""
    graph = imports()
    assert len(graph) > 50 and "snapcrawl._run" in graph["snapcrawl._crawler"]
    assert circles(graph) == []


def test_the_run_does_not_know_its_strategies() -> None:
    """The facade picks the strategy: the run imports neither, and the account listing does not import the run."""
    graph = imports()
    assert {"snapcrawl._account", "snapcrawl._volumes"}.isdisjoint(graph["snapcrawl._run"])
    assert "snapcrawl._run" not in graph["snapcrawl._account"]
    assert {"snapcrawl._account", "snapcrawl._volumes", "snapcrawl._stream"} <= graph["snapcrawl._crawler"]
