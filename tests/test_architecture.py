"""The layer picture of docs/design/architecture.md, checked: no import cycle inside the package, and the model a leaf.

Imports are read with ``ast`` from every module under squeezebert/, at module level and inside functions alike (a
lazy import is still a dependency; it only hides a cycle from the interpreter).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "squeezebert"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its source. ``from X import y`` counts as
    an import of ``X.y`` when that is a module, else of ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = next(iter(modules)).split(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
    return {m for m in found if m in modules and m != name and m.split(".")[0] == top}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_from_the_package():
    graph = import_graph()
    assert "squeezebert.config" in graph["squeezebert.model"]
    assert "squeezebert.model" in graph["squeezebert.checkpoint"]
    # function-level imports count: save_model imports the model card inside the function
    assert "squeezebert.model_card" in graph["squeezebert.checkpoint"]


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_model_imports_only_the_config():
    assert import_graph()["squeezebert.model"] == {"squeezebert.config"}


def test_a_cycle_is_found_and_shown():
    # the model <-> checkpoint cycle this layout removed, through a lazy (function-level) import
    graph = {"pkg.config": set(), "pkg.model": {"pkg.config", "pkg.checkpoint"}, "pkg.checkpoint": {"pkg.model"},
             "pkg.cli": {"pkg.checkpoint"}}
    assert find_cycle(graph) == ["pkg.checkpoint", "pkg.model", "pkg.checkpoint"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_lazy_and_relative_imports_are_read(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "model.py").write_text("from .config import X\n\ndef load():\n    from .sub import io\n")
    (package / "config.py").write_text("X = 1\n")
    (package / "sub" / "io.py").write_text("from ..model import load\nimport pkg.config\n")
    graph = import_graph(package)
    assert graph["pkg.model"] == {"pkg.config", "pkg.sub.io"}
    assert graph["pkg.sub.io"] == {"pkg.model", "pkg.config"}
    assert find_cycle(graph) == ["pkg.model", "pkg.sub.io", "pkg.model"]
