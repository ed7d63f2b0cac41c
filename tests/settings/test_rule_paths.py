"""The key paths the cross-section rules write by hand (infra/rules.py) name real settings: a
renamed field fails here instead of leaving error lines that point at a key no longer there."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from infra.schema import Settings

RULES = Path(__file__).resolve().parents[2] / "infra" / "rules.py"


def aliases(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    found: set[str] = set()
    for name, field in model.model_fields.items():
        found.add(field.alias or name)
        for nested in _models(field.annotation):
            found |= aliases(nested, seen)
    return found


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            yield current
        stack += list(get_args(current))


def problem_paths() -> list[str]:
    """The first argument of each Problem(...) in rules.py, with `{}` for each placeholder."""
    paths: list[str] = []
    for node in ast.walk(ast.parse(RULES.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Problem":
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                paths.append(first.value)
            elif isinstance(first, ast.JoinedStr):
                paths.append(
                    "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in first.values)
                )
    return paths


def segments(path: str) -> list[str]:
    return [s for s in re.split(r"[.\[\]]", path) if s and "{}" not in s and not s.isdigit()]


def test_every_key_in_a_rule_path_is_a_settings_key() -> None:
    known = aliases(Settings)
    paths = problem_paths()
    assert len(paths) > 20  # the rules do write paths by hand
    unknown = {path: s for path in paths for s in segments(path) if s not in known}
    assert unknown == {}


def test_the_check_catches_a_stale_key() -> None:
    """The control: a path naming a key the schema lacks is caught."""
    known = aliases(Settings)
    assert [s for s in segments("{}.contextLenght") if s not in known] == ["contextLenght"]
