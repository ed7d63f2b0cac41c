"""The packages form layers with no cycle: settings → program → components → modelsync, and the
`llamafleet` command on top. Read from the code's own module-level imports (ast)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("infra", "components", "modelsync", "policy")
# Which project packages each may import (module level).
ALLOWED = {
    "modelsync": {"modelsync"},
    "policy": {"policy"},
    "components": {"components", "modelsync"},
    "infra": {"infra", "components", "modelsync", "policy"},
}


@cache
def imports() -> dict[str, set[str]]:
    """Module name -> the project modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            found: set[str] = set()
            for node in ast.parse(path.read_text()).body:
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                found |= {n for n in names if n.split(".")[0] in PACKAGES}
            graph[module] = found
    known = set(graph)
    return {m: {n for n in targets if n in known} for m, targets in graph.items()}


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = {
        module: sorted(t for t in targets if t.split(".")[0] not in ALLOWED[module.split(".")[0]])
        for module, targets in imports().items()
    }
    assert {m: t for m, t in wrong.items() if t} == {}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle found by a depth-first walk, as the modules around it."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle() -> None:
    assert find_cycles(imports()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    """The control: the check above is not vacuous (the settings cycle review 2 found)."""
    graph = {"infra.schema": {"infra.cluster_settings"}, "infra.cluster_settings": {"infra.schema"}}
    assert find_cycles(graph) == [
        ["infra.cluster_settings", "infra.schema", "infra.cluster_settings"]
    ]
    assert "infra.cluster_settings" in imports()["infra.schema"]
