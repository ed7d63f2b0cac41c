"""The packages form layers with no cycle: command → program → settings → monitoring →
components → modelsync, policy and delivery (the CI scripts, stdlib only) apart. Read from the
code's own module-level imports (ast)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "llamafleet"
# Which llamafleet layers each layer may import (module level); "" is the package itself (its
# REPO_ROOT), which imports none.
ALLOWED = {
    "": set[str](),
    "modelsync": {"modelsync", ""},
    "policy": {"policy", ""},
    "delivery": {"delivery", ""},
    "components": {"components", "modelsync", ""},
    "monitoring": {"monitoring", "components", "modelsync", ""},
    "settings": {"settings", "monitoring", "components", "modelsync", ""},
    "program": {"program", "settings", "monitoring", "components", "modelsync", ""},
    "command": {
        "command",
        "program",
        "settings",
        "monitoring",
        "components",
        "modelsync",
        "policy",
        "",
    },
}
LAYERS = set(ALLOWED) - {""}


def layer(module: str) -> str:
    """`llamafleet.<layer>.…` -> its layer; `python -m llamafleet` runs the command; the
    package's `__init__` -> "" (it imports nothing: the fetcher image installs it alone)."""
    if module == "llamafleet.__main__":
        return "command"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


@cache
def imports() -> dict[str, set[str]]:
    """Module name -> the project modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n.split(".")[0] == "llamafleet"}
        graph[module] = found
    known = set(graph)
    return {m: {n for n in targets if n in known} for m, targets in graph.items()}


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = {
        module: sorted(t for t in targets if layer(t) not in ALLOWED[layer(module)])
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
    schema, cluster = "llamafleet.settings.schema", "llamafleet.settings.cluster"
    assert find_cycles({schema: {cluster}, cluster: {schema}}) == [[cluster, schema, cluster]]
    assert cluster in imports()[schema]


def test_the_layer_check_sees_each_layer() -> None:
    """The control: every layer has modules, and a settings module that imported the program
    would be caught."""
    assert {layer(m) for m in imports()} == set(ALLOWED)
    assert "program" not in ALLOWED[layer("llamafleet.settings.rules")]
