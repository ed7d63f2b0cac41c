"""The real engine, end to end, on a throwaway program: preview, up, no-change up, drift, destroy.

The program (written to a temporary directory) declares a Namespace, a ConfigMap and a Secret
through pulumi_kubernetes against the test control plane, with a file backend and passphrase
secrets, all through infra.engine (the Automation API wrapper the project CLI exposes).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import VENV, Cluster
from pulumi import automation as auto

from infra import engine

pytestmark = pytest.mark.e2e

SECRET = "e2e-plaintext-canary-7f3a9c"

PROGRAM = '''
"""Throwaway program of the engine smoke test."""
import pulumi
import pulumi_kubernetes as k8s

cfg = pulumi.Config()
provider = k8s.Provider("local", kubeconfig=cfg.require("kubeconfig"))
opts = pulumi.ResourceOptions(provider=provider)
ns = k8s.core.v1.Namespace("smoke", metadata={"name": "e2e-smoke"}, opts=opts)
child = pulumi.ResourceOptions(provider=provider, depends_on=[ns])
# The setting goes into an annotation: a change there is an in-place update (a change of a
# ConfigMap's data is a replacement in pulumi-kubernetes).
cm = k8s.core.v1.ConfigMap(
    "greeting",
    metadata={
        "name": "greeting",
        "namespace": "e2e-smoke",
        "annotations": {"llamafleet.io/greeting": cfg.require("greeting")},
    },
    data={"static": "1"},
    opts=child,
)
secret = k8s.core.v1.Secret(
    "token",
    metadata={"name": "token", "namespace": "e2e-smoke"},
    string_data={"token": cfg.require_secret("token")},
    opts=child,
)
pulumi.export("configmap", cm.metadata["name"])
pulumi.export("token", secret.string_data)
'''


@pytest.fixture
def program_dir(
    tmp_path: Path, engine_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    work = tmp_path / "smoke"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: llamafleet-e2e-smoke
            runtime:
              name: python
              options:
                toolchain: pip
                virtualenv: {VENV}
            """
        )
    )
    (work / "__main__.py").write_text(PROGRAM)
    # A Pulumi home of its own: proves no plugin comes from ~/.pulumi, only from PATH.
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "e2e-smoke-passphrase")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    yield work


def _state_files(work: Path) -> list[Path]:
    return list((work / ".pulumi").rglob("*.json"))


def test_preview_up_noop_drift_destroy(program_dir: Path, local_cluster: Cluster) -> None:
    stack_name = "smoke"
    stack = engine.open_stack(stack_name, program_dir)
    stack.set_config("kubeconfig", auto.ConfigValue(str(local_cluster.kubeconfig)))
    stack.set_config("greeting", auto.ConfigValue("hello"))
    stack.set_config("token", auto.ConfigValue(SECRET, secret=True))
    assert SECRET not in (program_dir / f"Pulumi.{stack_name}.yaml").read_text()

    planned = engine.preview(stack_name, program_dir)
    assert planned == {"create": 5}  # stack, provider, namespace, configmap, secret

    created = engine.up(stack_name, program_dir)
    assert created == {"create": 5}
    cm = local_cluster.get("configmap", "greeting", "-n", "e2e-smoke")
    assert cm["metadata"]["annotations"]["llamafleet.io/greeting"] == "hello"
    secret = local_cluster.get("secret", "token", "-n", "e2e-smoke")
    assert secret["data"]["token"]  # stored by the API server (base64)

    # The secret is encrypted in the state, never in plain text.
    states = _state_files(program_dir)
    assert states
    for path in states:
        assert SECRET not in path.read_text(), path

    # A second up changes nothing; the drift check agrees.
    assert engine.up(stack_name, program_dir) == {}
    args = ["preview", stack_name, "--work-dir", str(program_dir), "--expect-no-changes"]
    assert engine.main(args) == 0

    # Change one setting: exactly the ConfigMap would be updated, and the drift check fails.
    stack.set_config("greeting", auto.ConfigValue("changed"))
    assert engine.preview(stack_name, program_dir) == {"update": 1}
    assert engine.main(args) == 1

    deleted = engine.destroy(stack_name, program_dir, remove=True)
    assert deleted == {"delete": 5}
    gone = local_cluster.kubectl("get", "namespace", "e2e-smoke", "-o", "json", check=False)
    if gone.returncode == 0:  # namespace deletion may still be finishing
        assert json.loads(gone.stdout)["status"]["phase"] == "Terminating"
    else:
        assert "NotFound" in gone.stderr
