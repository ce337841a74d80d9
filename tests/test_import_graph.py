"""No import circles in ``genai_cloud/``: a module never needs, directly or through others, a
module that needs it back.

Every ``import`` counts, at the top of a module or inside a function (a lazy import still ties
the two modules together: it only moves the failure from import time to call time); imports
under ``if TYPE_CHECKING:`` do not, since they never run. ``from pkg import name`` counts as an
import of ``pkg.name`` when that is a module, else of ``pkg``; importing a package runs its
``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "genai_cloud"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes that run, skipping ``if TYPE_CHECKING:`` bodies."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                targets.add(full if full in files else source)
        found = set()
        for target in targets:
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: each is a dependency.
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {t for t in found if t in files and t != name
                       and not name.startswith(t + ".")}  # a package's own parents run first
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_lazy_and_package_imports():
    graph = import_graph()
    # from .errors import ... at the top of plan.py; bundle.py is imported by plan at the top.
    assert "genai_cloud.errors" in graph["genai_cloud.loading"]
    assert "genai_cloud.bundle" in graph["genai_cloud.plan"]
    # providers/sagemaker/render.py: "from ... import contract" (a module named in a package).
    assert "genai_cloud.contract" in graph["genai_cloud.providers.sagemaker.render"]
    # providers/sagemaker/provider.py: "from ..base import", and the lazy "from .ops import"
    # inside a method counts too.
    provider = graph["genai_cloud.providers.sagemaker.provider"]
    assert {"genai_cloud.providers.base", "genai_cloud.providers.sagemaker.ops"} <= provider
    # regions.py imports providers.base: the providers package's __init__ runs first.
    assert {"genai_cloud.providers", "genai_cloud.providers.base"} <= graph["genai_cloud.regions"]


def test_genai_cloud_has_no_import_circle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
