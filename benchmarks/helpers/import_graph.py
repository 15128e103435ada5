"""The import graph of ``snapcrawl/``, read with :mod:`ast`: its circles, and a picture for docs/architecture.md.

    python -m benchmarks.helpers.import_graph [--out docs/import-graph.png]

Every import counts, those inside functions and under ``TYPE_CHECKING`` included: a lazy import is still a
dependency, and one that runs back up is what makes a circle. ``tests/test_import_graph.py`` holds the package to
having none. The picture collapses each subpackage (``sinks``, ``limits``, ...) to one box, so that it stays
readable; edges in a circle are drawn red.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

__all__ = ["PACKAGE", "circles", "collapse", "imports", "main", "render"]

PACKAGE = Path(__file__).resolve().parents[2] / "snapcrawl"

Graph = Mapping[str, set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package under ``root`` and the modules of the same package it imports."""
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                for alias in node.names:  # ``from . import bench`` imports the submodule
                    targets.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in files else module)
        graph[name] = {target for target in targets if target in files and target != name}
    return graph


def circles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def collapse(graph: Graph, packages: Iterable[str]) -> dict[str, set[str]]:
    """The graph with every module of each package in ``packages`` merged into the package's node."""
    packages = sorted(packages, key=len, reverse=True)

    def box(name: str) -> str:
        return next((package for package in packages if name == package or name.startswith(package + ".")), name)

    merged: dict[str, set[str]] = {}
    for name, targets in graph.items():
        merged.setdefault(box(name), set()).update(box(target) for target in targets)
    return {name: targets - {name} for name, targets in merged.items()}


def _layers(graph: Graph) -> dict[str, int]:
    """Each node's layer: 0 for modules that import nothing here, else one above the highest it imports."""
    layer: dict[str, int] = {}
    busy: set[str] = set()

    def depth(node: str) -> int:
        if node in layer:
            return layer[node]
        if node in busy:  # a circle: cut it here
            return 0
        busy.add(node)
        layer[node] = 1 + max((depth(target) for target in graph.get(node, ())), default=-1)
        busy.discard(node)
        return layer[node]

    for node in sorted(graph):
        depth(node)
    return layer


def _edges(graph: Graph) -> Iterator[tuple[str, str]]:
    for name in sorted(graph):
        for target in sorted(graph[name]):
            yield name, target


def render(graph: Graph, out: Path, *, title: str) -> None:
    """Draw ``graph`` in layers, importers above what they import, circle edges red, into ``out`` (PNG)."""
    import matplotlib  # noqa: PLC0415 - only the picture needs it (the plot extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    layer = _layers(graph)
    rows: dict[int, list[str]] = {}
    for name in sorted(graph, key=lambda n: (layer[n], n)):
        rows.setdefault(layer[name], []).append(name)
    width = max(len(row) for row in rows.values())
    place = {
        name: ((i + 1) * width / (len(row) + 1), level * 1.6)
        for level, row in rows.items()
        for i, name in enumerate(row)
    }
    in_circle = {name for circle in circles(graph) for name in circle}
    fig, ax = plt.subplots(figsize=(max(12, width * 1.9), 2 + len(rows) * 1.3))
    for name, target in _edges(graph):
        red = name in in_circle and target in in_circle
        ax.annotate(
            "",
            xy=place[target],
            xytext=place[name],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#c0392b" if red else "#8a8a8a",
                "lw": 1.6 if red else 0.7,
                "alpha": 0.9 if red else 0.45,
                "shrinkA": 14,
                "shrinkB": 14,
                "connectionstyle": "arc3,rad=0.08",
            },
        )
    for name, (x, y) in place.items():
        label = name.removeprefix("snapcrawl.") if name != "snapcrawl" else "snapcrawl (__init__)"
        package = (PACKAGE.parent / name.replace(".", "/")).is_dir()
        ax.text(
            x,
            y,
            label + ("/" if package and name != "snapcrawl" else ""),
            ha="center",
            va="center",
            fontsize=9,
            bbox={
                "boxstyle": "round,pad=0.35",
                "fc": "#fdecea" if name in in_circle else ("#e8f0fb" if package else "white"),
                "ec": "#c0392b" if name in in_circle else "#4a6fa5",
            },
        )
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.8, max(rows) * 1.6 + 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Print the circles and draw the picture."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.helpers.import_graph", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=PACKAGE.parent / "docs" / "import-graph.png")
    args = parser.parse_args(argv)
    graph = imports()
    found = circles(graph)
    for circle in found:
        print("circle:", " <-> ".join(circle))
    subpackages = [name for name in graph if name.count(".") == 1 and (PACKAGE / name.split(".")[1]).is_dir()]
    render(
        collapse(graph, subpackages),
        args.out,
        title="snapcrawl/: who imports whom (an arrow points at what is imported; red: a circle)",
    )
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} circle(s); drawn to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
