"""ModelSync through the real engine (an inline program run by tests/engine_driver.py in a
process of its own, file backend) against moto_server: the provider as Pulumi really pickles and
hosts it, and the state it really writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llamafleet.command.engine import engine_bin_dir

from .conftest import ACCESS_KEY, SECRET_KEY, write_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

NEEDED = ("pulumi", "pulumi-resource-pulumi-python")
DRIVER = Path(__file__).resolve().parents[1] / "engine_driver.py"

PROGRAM = """
import os

import pulumi

from llamafleet.components.model_sync import ModelSync, ModelSyncArgs


def program() -> None:
    sync = ModelSync(
        "models",
        ModelSyncArgs(
            store_url=os.environ["E2E_STORE_URL"],
            models={"tiny": "tiny.gguf"},
            source_dir=os.environ["E2E_SOURCE_DIR"],
            endpoint_url=os.environ["E2E_ENDPOINT"],
        ),
    )
    pulumi.export("digests", sync.digests)
"""


@pytest.fixture
def project(
    tmp_path: Path, bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    missing = [name for name in NEEDED if not (engine_bin_dir() / name).is_file()]
    if missing:
        pytest.skip(f"not built: {', '.join(missing)}: run scripts/bootstrap-engine")
    work = tmp_path / "project"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: modelsync-e2e
            runtime:
              name: python
              options:
                toolchain: pip
                virtualenv: {Path(sys.executable).parent.parent}
            """
        )
    )
    (work / "program.py").write_text(PROGRAM)
    write_gguf(tmp_path / "models" / "tiny.gguf")
    monkeypatch.setenv("E2E_STORE_URL", f"s3://{bucket}/fleet")
    monkeypatch.setenv("E2E_SOURCE_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("E2E_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", (work / ".pulumi").as_uri())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "modelsync-e2e")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return work


def drive(op: str, project: Path) -> tuple[dict[str, Any], str]:
    """(the driver's JSON line, the engine's output) of one operation on stack `dev`."""
    done = subprocess.run(
        [sys.executable, str(DRIVER), op, "dev", str(project), str(project / "program.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_up_syncs_and_a_preview_without_the_files_changes_nothing(project: Path) -> None:
    (project / ".pulumi").mkdir()
    result, _ = drive("up", project)
    assert result["changes"] == {"create": 3}
    assert str(result["outputs"]["digests"]["tiny"]).startswith("sha256:")

    models = project.parent / "models"
    models.rename(models.with_name("elsewhere"))  # a CI runner previewing a pull request
    preview, output = drive("preview", project)
    assert preview["changes"] == {}
    assert "tiny.gguf: no such file on this machine" in output  # the CLI's diagnostics

    state = "".join(path.read_text() for path in (project / ".pulumi").rglob("*.json"))
    assert "tiny.gguf" in state  # the state was read, and it is plaintext JSON
    assert ACCESS_KEY not in state
    assert SECRET_KEY not in state
