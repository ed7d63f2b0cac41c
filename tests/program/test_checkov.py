"""Every rendered Kubernetes object of every stack through checkov's Kubernetes checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.stack_renders import STACKS, rendered_stack

from llamafleet.command.render import write

CHECKOV_VENV = (
    Path(os.environ.get("LLAMAFLEET_CACHE", Path.home() / ".cache" / "llamafleet"))
    / "tools"
    / "checkov"
)


def checkov() -> str:
    found = shutil.which("checkov") or str(CHECKOV_VENV / "bin" / "checkov")
    if not Path(found).exists():
        pytest.skip(f"checkov not installed: `make {CHECKOV_VENV}/bin/checkov` (its own venv)")
    return found


def test_checkov_finds_nothing_in_any_rendered_stack(tmp_path: Path) -> None:
    tool = checkov()
    for stack in STACKS:
        write(rendered_stack(stack), tmp_path / stack)
    done = subprocess.run(
        [tool, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet",
         "--compact", "-o", "json"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{f['check_id']} {f['check_name']}: {f['file_path']}"
        for report in reports
        for f in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert sum(report["summary"]["passed"] for report in reports) > 1000
