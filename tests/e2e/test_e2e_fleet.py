"""The whole program through the real engine, driven as a platform team drives it: `llamafleet
preview|up|refresh|destroy|keys` in a subprocess, against a local API server with two CPU tiers
and a tainted GPU tier (kwok nodes) and S3 on loopback.

The tests run in file order on one deployed stack; each one that changes the stack puts it back.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    MODEL_ELEMENTS,
    TEAM_A,
    TEAM_B,
    Cluster,
    Project,
    digest_of,
)
from support.tiny_llama_gguf import write_gguf

from llamafleet.command.engine import engine_log
from llamafleet_gateway.keys import key_hash

pytestmark = pytest.mark.e2e

IO_PROBE = Path(__file__).parent / "io_probe"


def namespace(team: str) -> str:
    return f"llamafleet-{team}"


def last_line(done: Any) -> str:
    return str(done.stdout).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def deployed(e2e_project: Project) -> Iterator[tuple[Project, str]]:
    """The e2e stack previewed (nothing exists yet), then deployed; destroyed at the end."""
    planned = e2e_project.llamafleet("preview")
    e2e_project.llamafleet("up")
    yield e2e_project, planned.stdout
    e2e_project.llamafleet("destroy", check=False)


def steps_of(preview_stdout: str, stack: str = "e2e") -> list[tuple[str, str, str]]:
    """(op, type, name) of each step `llamafleet preview` lists after its summary line (the
    last line that starts with `<stack>: `; the engine's own output comes before it)."""
    lines = preview_stdout.splitlines()
    summary = max(i for i, line in enumerate(lines) if line.startswith(f"{stack}: "))
    steps: list[tuple[str, str, str]] = []
    for line in lines[summary + 1 :]:
        op, kind, name = line.split()
        steps.append((op, kind, name))
    return steps


def placements(project: Project) -> list[tuple[str, str, dict[str, Any]]]:
    config = project.config()
    models = config["llamafleet:models"]
    return [
        (team, model, models[model])
        for team, tenant in config["llamafleet:tenants"].items()
        for model in tenant["models"]
    ]


def tier_nodes(cluster: Cluster, tier: str) -> set[str]:
    nodes = cluster.get("nodes", "-l", f"llamafleet.io/tier={tier}")["items"]
    return {n["metadata"]["name"] for n in nodes}


def wait_running(cluster: Cluster, ns: str, selector: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = cluster.get("pods", "-n", ns, "-l", selector)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if len(running) >= want:
            return running
        time.sleep(1)
    raise AssertionError(f"{ns} {selector}: fewer than {want} Running pods: {pods}")


def test_preview_of_a_new_stack_plans_only_creates(deployed: tuple[Project, str]) -> None:
    _, planned = deployed
    steps = steps_of(planned)
    assert steps and {op for op, _, _ in steps} == {"create"}
    types = {t for _, t, _ in steps}
    assert "kubernetes:apps/v1:Deployment" in types
    assert "pulumi-python:dynamic/tenancy:ApiKey" in types
    assert "pulumi-python:dynamic/models:ModelManifest" in types


def test_no_copy_of_the_kubeconfig_outlives_the_engine_runs(
    deployed: tuple[Project, str],
) -> None:
    """The Kubernetes provider writes the kubeconfig it is given to a temporary file for Helm
    and never removes it; the engine runs it in a TMPDIR of its own that it removes."""
    project, _ = deployed
    assert project.config()["llamafleet:clusters"]["local"]["kubeconfig"]["path"]
    assert sorted((project.work_dir / ".tmp").rglob("*")) == []


def test_each_models_pods_run_only_on_its_tiers(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    project, _ = deployed
    for team, model, settings in placements(project):
        for tier in settings["tiers"]:
            name = f"{model}-{tier}"
            ns = namespace(team)
            deployment = local_cluster.get("deployment", name, "-n", ns)
            spec = deployment["spec"]["template"]["spec"]
            assert spec["nodeSelector"] == {"llamafleet.io/tier": tier}
            selector = f"app.kubernetes.io/instance={name}"
            pods = wait_running(local_cluster, ns, selector, settings["replicas"]["min"])
            assert {p["spec"]["nodeName"] for p in pods} <= tier_nodes(local_cluster, tier)
            tolerates_gpu = any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", []))
            assert tolerates_gpu == (tier == "gpu-l4"), name
    # Every kind the program declares was accepted by the API server's own validation.
    for kind in ("service", "resourcequota", "limitrange", "networkpolicy", "poddisruptionbudget"):
        assert local_cluster.get(kind, "-n", namespace(TEAM_A))["items"], kind
    assert local_cluster.get("hpa", "-n", namespace(TEAM_B))["items"]


def restricted_pod(name: str, ns: str, cpus: str) -> dict[str, Any]:
    """A pod the namespace's `restricted` Pod Security level admits: only quota can refuse it."""
    amounts = {"cpu": cpus, "memory": "64Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "nodeSelector": {"llamafleet.io/tier": "cpu-big"},
            "containers": [
                {
                    "name": "c",
                    "image": "example.invalid/never-pulled:1",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"requests": amounts, "limits": amounts},
                }
            ],
        },
    }


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def test_the_quota_counts_running_replicas(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    ns = namespace(TEAM_B)
    wait_running(local_cluster, ns, "app.kubernetes.io/name=llama-server", 1)
    quota = local_cluster.get("resourcequota", "llamafleet-quota", "-n", ns)
    deadline = time.monotonic() + 60
    while cpu_millis(quota["status"]["used"].get("limits.cpu", "0")) == 0:
        assert time.monotonic() < deadline, quota
        time.sleep(1)
        quota = local_cluster.get("resourcequota", "llamafleet-quota", "-n", ns)
    hard = cpu_millis(quota["status"]["hard"]["limits.cpu"])
    used = cpu_millis(quota["status"]["used"]["limits.cpu"])
    assert 0 < used < hard  # the running replica is counted

    over = local_cluster.apply(restricted_pod("over-quota", ns, f"{hard - used + 1}m"))
    assert over.returncode != 0
    assert "exceeded quota" in over.stderr, over.stderr
    fits = local_cluster.apply(restricted_pod("fits-quota", ns, f"{hard - used}m"))
    assert fits.returncode == 0, fits.stderr
    local_cluster.kubectl("delete", "pod", "fits-quota", "-n", ns, "--wait=false")


def test_a_second_up_changes_nothing_and_refresh_finds_no_drift(
    deployed: tuple[Project, str],
) -> None:
    project, _ = deployed
    assert last_line(project.llamafleet("up")) == f"{project.stack}: no changes"
    assert last_line(project.llamafleet("refresh")) == f"{project.stack}: no drift"
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0


def test_a_replica_range_change_touches_that_models_autoscaler_and_the_routing_table(
    deployed: tuple[Project, str],
) -> None:
    project, _ = deployed
    original = project.config()
    changed = json.loads(json.dumps(original))
    changed["llamafleet:models"]["big"]["replicas"]["max"] = 4
    project.write_config(changed)
    try:
        planned = project.llamafleet("preview")
        drift = project.llamafleet("preview", "--expect-no-changes", check=False)
    finally:
        project.write_config(original)
    # Dynamic providers are configured with the whole stack config, so Pulumi lists their
    # provider as updated whenever a setting changes; no resource of theirs changes.
    resources = [s for s in steps_of(planned.stdout) if not s[1].startswith("pulumi:providers:")]
    # The gateway's routing table holds the tier's capacity (max replicas x slots); the
    # gateway re-reads it live, so its pods do not roll. The alert rules hold the maximum too
    # (LlamafleetModelAtMaxReplicas).
    assert sorted(resources) == [
        (
            "update",
            "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
            f"local-{TEAM_A}-big-cpu-big-hpa",
        ),
        ("update", "kubernetes:core/v1:ConfigMap", "local-gateway-config"),
        ("update", "kubernetes:core/v1:ConfigMap", "local-monitoring-rules"),
    ]
    assert drift.returncode == 1


def test_what_changed_behind_pulumis_back_is_put_back_but_a_scale_is_kept(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    project, _ = deployed
    ns = namespace(TEAM_A)
    local_cluster.kubectl("scale", "deployment", "small-cpu-small", "-n", ns, "--replicas=3")
    local_cluster.kubectl("delete", "deployment", "big-cpu-big", "-n", ns)
    # The drift check: a plain preview compares the code with the state only; refreshed, it sees
    # the deleted Deployment (the scale is the autoscaler's field, ignored).
    plain = project.llamafleet("preview", after=["--expect-no-changes"], check=False)
    refreshed = project.llamafleet(
        "preview", after=["--refresh", "--expect-no-changes"], check=False
    )
    assert (plain.returncode, refreshed.returncode) == (0, 1), refreshed.stdout + refreshed.stderr

    project.llamafleet("up")

    assert local_cluster.get("deployment", "big-cpu-big", "-n", ns)["metadata"]["name"]
    scaled = local_cluster.get("deployment", "small-cpu-small", "-n", ns)
    assert scaled["spec"]["replicas"] == 3  # the autoscaler's field: not undone by `up`
    assert last_line(project.llamafleet("up")) == f"{project.stack}: no changes"
    local_cluster.kubectl("scale", "deployment", "small-cpu-small", "-n", ns, "--replicas=1")


def provider_reads(probe: Path) -> tuple[int, set[str]]:
    """Bytes read and .gguf files opened by the dynamic provider processes recorded in `probe`."""
    records = [json.loads(p.read_text()) for p in probe.glob("*.json")]
    assert records, "no provider process was recorded"
    return sum(r["rchar"] for r in records), {f for r in records for f in r["opened"]}


def probed(project: Project, probe: Path) -> Project:
    probe.mkdir()
    env = {
        **project.env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(IO_PROBE), os.environ.get("PYTHONPATH")])),
        "LLAMAFLEET_IO_PROBE": str(probe),
    }
    return Project(project.work_dir, project.stack, env, project.transcript)


def test_a_preview_reads_no_model_bytes_and_an_up_rehashes_a_touched_file(
    deployed: tuple[Project, str], tmp_path: Path
) -> None:
    project, _ = deployed
    small = Path(project.config()["llamafleet:models"]["small"]["source"])
    os.utime(small)  # touched: the hash cache no longer vouches for it

    probed(project, tmp_path / "preview").llamafleet("preview")
    preview_bytes, preview_opened = provider_reads(tmp_path / "preview")
    probed(project, tmp_path / "up").llamafleet("up")
    up_bytes, up_opened = provider_reads(tmp_path / "up")

    assert preview_opened == set()
    assert str(small) in up_opened  # the control: a changed file is read, by the same probe
    assert up_bytes - preview_bytes >= small.stat().st_size


def deployment_versions(cluster: Cluster) -> dict[str, str]:
    items = cluster.get("deployments", "-A", "-l", "app.kubernetes.io/part-of=llamafleet")["items"]
    return {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}": d["metadata"]["resourceVersion"]
        for d in items
    }


def test_a_synced_digest_other_than_the_pin_stops_up_and_changes_no_deployment(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    project, _ = deployed
    settings = project.config()["llamafleet:models"]["small"]
    source = Path(settings["source"])
    before = deployment_versions(local_cluster)
    write_gguf(source, fill=2.0, elements=MODEL_ELEMENTS["small"])  # other bytes
    try:
        failed = project.llamafleet("up", check=False)
    finally:
        write_gguf(source, fill=1.0, elements=MODEL_ELEMENTS["small"])
    assert digest_of(source) == settings["digest"]
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    naming = [line for line in output.splitlines() if "llamafleet:models.small.digest" in line]
    assert len(naming) == 1, output
    assert "the stack pins " + settings["digest"] in naming[0]
    assert deployment_versions(local_cluster) == before
    project.llamafleet("up")


def keys_of(project: Project, team: str) -> dict[str, str]:
    """`llamafleet keys STACK TEAM`: `<name> <key>` per line (kept out of the transcript)."""
    done = project.llamafleet("keys", after=[team], record=False)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def secret_values(cluster: Cluster, ns: str) -> set[str]:
    """The keys the team's llama-servers accept: the gateway's internal key and the scraper's."""
    secret = cluster.get("secret", "llamafleet-api-keys", "-n", ns)
    return set(base64.b64decode(secret["data"]["keys"]).decode().split())


def gateway_hashes(cluster: Cluster) -> dict[str, str]:
    """The gateway's key hashes (hash -> team): where the teams' keys end."""
    secret = cluster.get("secret", "llamafleet-gateway-keys", "-n", "llamafleet-gateway")
    return json.loads(base64.b64decode(secret["data"]["keys.json"]))


def test_a_key_name_added_adds_one_key_and_the_oldest_removed_retires_only_it(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    project, _ = deployed
    ns = namespace(TEAM_A)
    first = keys_of(project, TEAM_A)
    assert list(first) == ["k1", "k2"]
    hashes = gateway_hashes(local_cluster)
    assert {hashes[key_hash(key)] for key in first.values()} == {TEAM_A}
    # Team keys end at the gateway: the servers accept only its internal key and the scraper's.
    served = secret_values(local_cluster, ns)
    assert len(served) == 2 and not served & set(first.values())
    config = project.config()
    tenant = config["llamafleet:tenants"][TEAM_A]

    tenant["apiKeys"] = ["k1", "k2", "k3"]
    project.write_config(config)
    # One key more, and the gateway's Secret of hashes updated in place (never deleted); no
    # model server changes.
    assert last_line(project.llamafleet("up")) == f"{project.stack}: create 1, update 1"
    added = keys_of(project, TEAM_A)
    assert list(added) == ["k1", "k2", "k3"]
    assert {k: added[k] for k in first} == first  # the others are kept
    assert added["k3"] not in first.values()

    tenant["apiKeys"] = ["k2", "k3"]
    project.write_config(config)
    assert last_line(project.llamafleet("up")) == f"{project.stack}: delete 1, update 1"
    retired = keys_of(project, TEAM_A)
    assert retired == {"k2": added["k2"], "k3": added["k3"]}
    in_cluster = gateway_hashes(local_cluster)
    assert key_hash(first["k1"]) not in in_cluster
    assert {key_hash(added["k2"]), key_hash(added["k3"])} <= set(in_cluster)
    assert secret_values(local_cluster, ns) == served


def test_no_key_is_in_plain_text_in_state_history_backups_output_or_render(
    deployed: tuple[Project, str], local_cluster: Cluster, tmp_path: Path
) -> None:
    project, _ = deployed
    keys = set().union(
        *(secret_values(local_cluster, namespace(t)) for t in (TEAM_A, TEAM_B)),
        *(keys_of(project, t).values() for t in (TEAM_A, TEAM_B)),
    )
    assert len(keys) >= 6
    kinds = {p.relative_to(project.state_dir).parts[1] for p in project.state_dir.rglob("*.json")}
    assert {"stacks", "history", "backups"} <= kinds, kinds
    state = "".join(p.read_text() for p in project.state_dir.rglob("*") if p.is_file())
    out = tmp_path / "render"
    project.llamafleet_render(out)
    rendered = (out / "resources.json").read_text()
    logs = list(engine_log(project.stack, "up").parent.glob(f"engine-{project.stack}-*.log"))
    assert logs
    logged = "".join(log.read_text() for log in logs)  # the engine's whole output, kept
    for key in keys:
        assert key not in state
        assert key not in "".join(project.transcript)
        assert key not in rendered
        assert key not in logged


def test_destroy_leaves_no_object_and_no_resource_in_the_state(
    deployed: tuple[Project, str], local_cluster: Cluster
) -> None:
    project, _ = deployed
    project.llamafleet("destroy")
    for team in (TEAM_A, TEAM_B):
        gone = local_cluster.kubectl("get", "namespace", namespace(team), check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout  # not Terminating
    left = local_cluster.get("deployments", "-A", "-l", "app.kubernetes.io/part-of=llamafleet")
    assert left["items"] == []
    exported = json.loads(project.pulumi("stack", "export").stdout)
    assert not exported["deployment"].get("resources")
