"""The key paths the cross-section rules write by hand (llamafleet/settings/rules.py) name real
settings: a renamed field fails here instead of leaving error lines that point at a key no longer
there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from support.settings_mutations import settings_keys

RULES = Path(__file__).resolve().parents[2] / "llamafleet" / "settings" / "rules.py"


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
    known = settings_keys()
    paths = problem_paths()
    assert len(paths) > 20  # the rules do write paths by hand
    unknown = {path: s for path in paths for s in segments(path) if s not in known}
    assert unknown == {}


def test_the_check_catches_a_stale_key() -> None:
    """The control: a path naming a key the schema lacks is caught."""
    known = settings_keys()
    assert [s for s in segments("{}.contextLenght") if s not in known] == ["contextLenght"]
