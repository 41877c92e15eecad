"""No two files import each other, not even through an import inside a function.

A cycle hidden in a function (`--demo` wiring did that three times) still ties the two
files together: neither can be read, moved or tested without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lessons", "capstone")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import anywhere in the file could mean (`from a import b`: a and a.b)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    return {module: (imported_names(path, module) & files.keys()) - {module} for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_file_imports_a_file_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


# The layers, bottom up (docs/architecture.md): a file may import its own layer and the
# ones below it, never one above. The root command finds the capstone's command groups
# through entry points, so no import arrow runs from `lessons` up to `capstone`.
COMMAND_LINE = ("lessons.cli", "lessons.__main__", "lessons")
LAYERS = (
    ("toolkit", lambda module: module.startswith("lessons.toolkit")),
    ("lessons", lambda module: module.startswith("lessons.") and module not in COMMAND_LINE),
    ("capstone", lambda module: module.startswith("capstone")),
    ("command line", lambda module: module in COMMAND_LINE),
)


def layer_of(module: str) -> int:
    return next(number for number, (_, belongs) in enumerate(LAYERS) if belongs(module))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{module} ({LAYERS[layer_of(module)][0]}) imports {other} ({LAYERS[layer_of(other)][0]})"
                  for module, others in graph.items() for other in others
                  if layer_of(other) > layer_of(module) and other != "lessons")


def test_the_layer_check_finds_an_upward_import() -> None:
    assert upward_imports({"lessons.toolkit.exits": {"capstone.room"}, "capstone.room": set()}) == [
        "lessons.toolkit.exits (toolkit) imports capstone.room (capstone)"]
    assert upward_imports({"capstone.room": {"lessons.toolkit.exits"}, "lessons.toolkit.exits": set()}) == []


def test_no_file_imports_a_layer_above_its_own() -> None:
    assert upward_imports(import_graph()) == []
