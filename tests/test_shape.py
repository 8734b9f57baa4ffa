"""The code's shape: no import circle between modules, and an engine free of the UI.

Every module of ``engine/`` and ``tui_trainer/`` is parsed (not imported); an
import anywhere in it counts, at module level or inside a function, and relative
imports are resolved. ``from package import name`` counts as an import of the
module ``package.name`` when there is one, else of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "tui_trainer")
UI_LIBRARIES = ("textual", "rich", "typer", "plotext", "textual_plotext")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> set[str]:
    """Every absolute module name the file imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (itself left out)."""
    modules = _modules()
    return {name: {m for m in _imported(name, path) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a path [a, b, ..., a], or [] when there is none."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = BLACK
        return []

    for node in sorted(graph):
        if colour[node] == WHITE and (found := visit(node)):
            return found
    return []


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    # cli.py imports the app only inside its commands, relatively: that edge must be seen
    assert "tui_trainer.app" in graph["tui_trainer.cli"]
    assert "engine.events" in graph["tui_trainer.app"]


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_modules():
    graph = import_graph()
    # a package's __init__ re-exporting its modules is not a circle with them
    for name in list(graph):
        if (REPO / name.replace(".", "/") / "__init__.py").is_file():
            graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    cycle = _cycle(graph)
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_engine_imports_no_ui_library():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        if not name.startswith("engine"):
            continue
        for imported in _imported(name, path):
            if imported.split(".")[0] in UI_LIBRARIES:
                bad.append(f"{name} imports {imported}")
    assert not bad, bad
