"""Run an inline program of a test through the real engine, in a process of its own (a pytest
process may have installed Pulumi's mocks, which an inline run must not see).

    python tests/engine_driver.py OP STACK WORK_DIR PROGRAM_FILE

PROGRAM_FILE defines `program()`. OP is preview, up, refresh or destroy. Prints one JSON line:
{"changes": {...}, "outputs": {...}} (outputs after up, secrets included: tests only).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from llamafleet.command import engine
from llamafleet.command.engine_output import to_stderr


def load_program(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("engine_test_program", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.program


def main(op: str, stack_name: str, work_dir: str, program_file: str) -> int:
    stack = engine.open_stack(stack_name, Path(work_dir), load_program(Path(program_file)))
    out = {"on_output": to_stderr, "on_error": to_stderr}
    if op == "preview":
        changes = engine.changes(stack.preview(diff=True, **out).change_summary)
    elif op == "up":
        changes = engine.changes(stack.up(diff=True, **out).summary.resource_changes)
    elif op == "refresh":
        changes = engine.changes(stack.refresh(**out).summary.resource_changes)
    elif op == "destroy":
        changes = engine.changes(stack.destroy(**out).summary.resource_changes)
    else:
        raise SystemExit(f"unknown op {op}")
    outputs = {name: value.value for name, value in stack.outputs().items()}
    print(json.dumps({"changes": changes, "outputs": outputs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
