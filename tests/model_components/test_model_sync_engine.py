"""ModelSync through the real engine (infra.engine, file backend) against moto_server: the
provider as Pulumi really pickles and hosts it, and the state it really writes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from infra import engine

from .conftest import ACCESS_KEY, SECRET_KEY, write_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

NEEDED = ("pulumi", "pulumi-language-python")

PROGRAM = """
import os

import pulumi

from components.model_sync import ModelSync, ModelSyncArgs

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
    missing = engine.missing_engine_binaries(NEEDED)
    if missing:
        pytest.skip(f"Pulumi engine incomplete: {'; '.join(missing)}")
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
    (work / "__main__.py").write_text(PROGRAM)
    write_gguf(tmp_path / "models" / "tiny.gguf")
    monkeypatch.setenv("E2E_STORE_URL", f"s3://{bucket}/fleet")
    monkeypatch.setenv("E2E_SOURCE_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("E2E_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "modelsync-e2e")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return work


def test_up_syncs_and_a_preview_without_the_files_changes_nothing(project: Path) -> None:
    assert engine.up("dev", project, on_output=None) == {"create": 3}
    outputs = engine.open_stack("dev", project).outputs()
    assert str(outputs["digests"].value["tiny"]).startswith("sha256:")

    models = project.parent / "models"
    models.rename(models.with_name("elsewhere"))  # a CI runner previewing a pull request
    preview = engine.open_stack("dev", project).preview(diff=True)
    assert engine.changes(preview.change_summary) == {}
    assert "tiny.gguf: no such file on this machine" in preview.stderr  # the CLI's diagnostics

    state = "".join(path.read_text() for path in (project / ".pulumi").rglob("*.json"))
    assert "tiny.gguf" in state  # the state was read, and it is plaintext JSON
    assert ACCESS_KEY not in state
    assert SECRET_KEY not in state
