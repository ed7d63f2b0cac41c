"""Live state survives refactors and renames, through the real engine: a `local`-style stack
deployed by the tree before it (4291b03, from git) previews no change after it but the one made
on purpose since (HPAs owned by their Deployments), refreshes with no drift, and after an `up`
previews no change at all; then destroys. The dynamic providers (ApiKey, StoreBucket, ModelSync) are
pickled into the state by module path, so this also proves the new tree still loads them."""

from __future__ import annotations

import base64
import copy
import json
import pickletools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import REPO, TEAM_B, Project, ProjectFactory, small_config

pytestmark = pytest.mark.e2e

BEFORE = "4291b03"  # main before issue 13 (one source of truth)
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
API_KEY = "pulumi-python:dynamic/tenancy:ApiKey"


@pytest.fixture(scope="module")
def tree_before(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree-before")
    archive = subprocess.run(
        ["git", "archive", BEFORE], cwd=REPO, capture_output=True, check=True, timeout=120
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True, timeout=120)
    return out


def test_a_stack_deployed_before_the_refactor_previews_no_change_after_it(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str, tree_before: Path
) -> None:
    config = small_config(e2e_models, store_endpoint)
    before = copy.deepcopy(config)
    # The old tree took the store's port as a setting; the new one derives it from the URL.
    before["llamafleet:modelStore"]["endpointPort"] = int(store_endpoint.rsplit(":", 1)[1])
    # Nor did it have a gateway.
    for key in ("gateway", "redis"):
        before["llamafleet:images"].pop(key, None)
    before.get("llamafleet:serving", {}).pop("gateway", None)
    # Nor alerts, nor a namespace of its own for them.
    before.pop("llamafleet:alerting", None)
    for cluster in before["llamafleet:clusters"].values():
        cluster.get("loadBalancer", {}).pop("type", None)
        cluster.get("loadBalancer", {}).pop("tls", None)
        cluster.pop("createMonitoringNamespace", None)
    project = make_project("e2e-before", before)
    old = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cli",  # the module path of the tree before
            "up",
            project.stack,
            "--work-dir",
            str(project.work_dir),
        ],
        cwd=tree_before,
        env={**project.env, "PYTHONPATH": str(tree_before)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert old.returncode == 0, old.stdout[-4000:] + old.stderr[-4000:]
    try:
        project.write_config(config)
        preview = project.llamafleet("preview")
        # Changes since that tree, each made on purpose, and nothing deleted or replaced: each
        # HPA is now owned by its Deployment (tests/e2e/test_e2e_keda_switch.py says why); the
        # gateway is new (its objects, and the team's internal key for it), and with it the
        # model servers accept that key (their key Secret, a mark and --n-predict on their pod
        # template) from the gateway's pods (their NetworkPolicy).
        steps = set(re.findall(r"^\s+([~+-]+) (\S+): \((\S+)\)$", preview.stdout, re.M))
        # (The Kubernetes provider's options changed too: ConfigMaps are now updated in place.)
        updated = {
            kind
            for _, kind, what in steps
            if what == "update" and not kind.startswith("pulumi:providers:")
        }
        assert {what for _, _, what in steps} == {"update", "create"}, preview.stdout
        # A one-replica model's PDB now keeps it from eviction until a surge pod is ready.
        assert updated == {HPA, DEPLOYMENT, SECRET, NETWORK_POLICY, PDB}, preview.stdout
        created = re.findall(r"^\s+\+ (\S+): \(create\)$", preview.stdout, re.M)
        assert "llamafleet:serving:Gateway" in created and API_KEY in created, created
        # Only the dynamic providers' default provider is listed: it gets the stack's whole
        # config, which lost endpointPort; the engine counts no resource change.
        assert _provider_modules(project) == {
            "components.api_keys",
            "components.model_sync_provider",
            "components.store_bucket",
        }
        # The old tree's pickles name `components.*`, which imports nothing now: the command
        # moves them before the refresh loads them (Read), and the destroy below (Delete).
        refresh = project.llamafleet("refresh")
        assert f"{project.stack}: no drift" in refresh.stdout
        assert "moved them (state before:" in refresh.stderr, refresh.stderr
        assert _provider_modules(project) == {
            "llamafleet.components.api_keys",
            "llamafleet.components.model_sync_provider",
            "llamafleet.components.store_bucket",
        }
        again = project.llamafleet("refresh")
        assert "moved them" not in again.stderr
        project.llamafleet("up")
        after = project.llamafleet("preview", after=["--expect-no-changes"], check=False)
        assert after.returncode == 0, after.stdout[-4000:] + after.stderr[-4000:]
        assert f"{project.stack}: no changes" in after.stdout.splitlines(), after.stdout
    finally:
        project.llamafleet("destroy")


def _provider_modules(project: Project) -> set[str]:
    """The modules the state's pickled dynamic providers name (inputs and outputs)."""
    exported = json.loads(project.pulumi("stack", "export").stdout)
    found: set[str] = set()
    for resource in exported["deployment"]["resources"]:
        for section in ("inputs", "outputs"):
            serialized = (resource.get(section) or {}).get("__provider")
            if isinstance(serialized, str):
                for op, arg, _ in pickletools.genops(base64.b64decode(serialized)):
                    if op.name in {"SHORT_BINUNICODE", "BINUNICODE"} and "." in str(arg):
                        found.add(str(arg))
    return found


def _keys(project: Project, team: str) -> dict[str, str]:
    done = project.llamafleet("keys", after=[team], record=False)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_a_team_renamed_with_its_former_name_keeps_its_keys(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str
) -> None:
    """The engine carries the Tenant's alias over to the ApiKeys named after it: the keys
    survive, while the namespace (immutable name) is replaced."""
    config = small_config(e2e_models, store_endpoint)
    project = make_project("e2e-rename", config)
    try:
        project.llamafleet("up")
        before = _keys(project, TEAM_B)
        tenants = config["llamafleet:tenants"]
        tenants["renamed"] = {**tenants.pop(TEAM_B), "formerName": TEAM_B}
        project.write_config(config)
        up = project.llamafleet("up")
        assert "delete" not in "".join(
            line for line in up.stdout.splitlines() if "tenancy:ApiKey" in line
        )
        assert _keys(project, "renamed") == before
    finally:
        project.llamafleet("destroy")
