"""The shape of the package: imports follow the flow, modules stay small, one parser."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"autobatch": ROOT / "autobatch", "autobatch_cli": ROOT / "cli"}
MAX_LINES = 300


def modules() -> dict[str, Path]:
    """Every module of the library and the CLI by its dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules `name` imports anywhere (functions included), TYPE_CHECKING
    blocks excluded; `from package import module` counts as importing the module."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_cycle_finder_finds_a_circle_and_accepts_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_import_graph_has_no_circles():
    assert cycles(import_graph()) == []


def test_imports_inside_functions_count_and_type_checking_blocks_do_not(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n"
                    "def f():\n    from c import d\n")
    assert imported("m", path, {"b", "c", "c.d"}) == {"c", "c.d"}


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.startswith("autobatch.")))
def test_no_library_module_is_over_300_lines(name):
    assert len(modules()[name].read_text().splitlines()) <= MAX_LINES


def test_the_library_has_no_argument_parser_of_its_own():
    users = [name for name, path in modules().items() if name.startswith("autobatch.")
             and "argparse" in imported(name, path, {"argparse"} | set(modules()))]
    assert users == []


def test_the_core_does_not_import_presentation():
    graph = import_graph()
    core = [name for name in graph if name.startswith("autobatch.") and not
            name.startswith("autobatch.report")]
    leaks = {name: sorted(m for m in graph[name] if m.startswith("autobatch.report"))
             for name in core}
    assert {k: v for k, v in leaks.items() if v} == {}
