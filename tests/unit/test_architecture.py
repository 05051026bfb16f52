"""The package's shape, checked: layers import downward only, no import cycles, no module far
over 500 lines, and nothing outside ``models/`` reads a private attribute of another object.

Layers, lowest first (a module may import its own layer and those below it)::

    base (errors, loading, distributed) → data → encoders → losses → training → models
    → evaluation → run (config, experiment, tuning, robustness) → ranking → serving → cli

``training/`` is the engine the models drive (the epoch loop, samplers): it imports no model,
and models call it from their ``fit``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import clrec

SOURCE = Path(clrec.__file__).parent
LAYERS = [
    {"clrec", "errors", "loading", "distributed", "manifest"},
    {"data"},
    {"encoders"},
    {"losses"},
    {"training"},
    {"models"},
    {"evaluation"},
    {"config", "experiment", "tuning", "robustness"},
    {"ranking"},
    {"serving"},
    {"cli"},
]
MAX_LINES = 550  # "about 500": a module past this wants splitting


def _modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("clrec", *path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The clrec modules ``path`` imports (anywhere in the file, lazily or not)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "clrec"
    return next(rank for rank, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)  # StopIteration: a new top-level module needs a layer above


def test_layers_import_downward_only() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    """Strongly connected components of the import graph (packages importing their own
    submodules in ``__init__`` are not cycles: the submodules never import the package)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_module_far_over_500_lines() -> None:
    long = {
        str(path.relative_to(SOURCE)): count
        for path in MODULES.values()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _own_names(tree: ast.Module) -> set[str]:
    """Private names a module's classes define: ``self._x`` attributes and ``_x`` methods (a
    class may read them on another instance of itself, e.g. in a classmethod)."""
    names = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("self", "cls")
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.update(
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return names


def test_only_models_read_private_attributes() -> None:
    """``obj._name`` of another module's object: reading another object's private state is
    how the service once re-implemented the model's score; only ``models/`` may."""
    found: dict[str, list[str]] = defaultdict(list)
    for module, path in MODULES.items():
        if module.startswith("clrec.models"):
            continue
        tree = ast.parse(path.read_text())
        own = _own_names(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
            ):
                found[module].append(f"{ast.unparse(node)} (line {node.lineno})")
    assert dict(found) == {}
