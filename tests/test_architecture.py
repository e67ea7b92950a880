"""The shape of the package, checked from its source: imports run one way, and no module
reaches into another's private names (issue 11).

The layers, from the bottom: ``_errors``, ``_refs``, ``_send``, ``_registry``,
``_signal`` (the core), then the catalogue, the plugin manager and its helpers, then
``cli``, ``testing``, ``pytest_plugin`` and ``contrib``.  Every import counts, those
under ``if TYPE_CHECKING:`` and inside functions included: a cycle hidden from the
interpreter is still a cycle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "core" / "tocsin"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import in module *name*."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
    return found


def tocsin_module(target: str) -> str | None:
    """The tocsin module *target* names (itself, or the package it is in), if any."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, names in imports_of(name):
            module = tocsin_module(target)
            if module is None:
                continue
            # `from tocsin.signals import auth` imports the submodule, not the package.
            submodules = {f"{target}.{n}" for n in names} & MODULES.keys()
            for dependency in submodules or {module}:
                if dependency != name and not name.startswith(dependency + "."):
                    edges[name].add(dependency)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_list_is_what_this_test_expects() -> None:
    assert {"tocsin._registry", "tocsin._signal", "tocsin._send", "tocsin._manager"} <= set(MODULES)


def test_imports_form_no_cycle() -> None:
    assert find_cycle(graph()) is None


def test_the_core_imports_nothing_above_it() -> None:
    core = ["tocsin._errors", "tocsin._switches", "tocsin._refs", "tocsin._send"]
    core += ["tocsin._registry"]
    core += ["tocsin._prototype", "tocsin._signal"]
    edges = graph()
    for position, name in enumerate(core):
        below = set(core[:position])
        assert edges[name] <= below, f"{name} imports {sorted(edges[name] - below)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_names(name: str) -> None:
    for target, names in imports_of(name):
        if tocsin_module(target) is None or tocsin_module(target) == name:
            continue
        private = [
            n
            for n in names
            if n.startswith("_") and not n.startswith("__") and f"{target}.{n}" not in MODULES
        ]
        assert not private, f"{name} imports {private} from {target}"


def test_a_cycle_is_found_when_there_is_one() -> None:
    # The checker itself must be able to fail.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
