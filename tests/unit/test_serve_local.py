"""`llamafleet serve`: a Deployment as the API server returns it, turned into native processes."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest
from stack_renders import rendered_stack

from components.server_args import API_KEY_DIR, MODEL_DIR
from infra.serve_local import (
    Served,
    ServeError,
    client_exports,
    lay_out,
    local_mounts,
    localise,
    pod_from_deployment,
)

MOUNTS = {"/models": "/cache/models", "/etc/llamafleet/api-keys": "/run/keys"}
SECRETS = {
    ("llamafleet-demo", "llamafleet-api-keys"): {"keys": b"team-key-1\nteam-key-2\nscraper\n"},
    ("llamafleet-demo", "model-store-credentials"): {"credentials": b"[default]\n"},
}


def read_secret(namespace: str, name: str) -> dict[str, bytes]:
    return SECRETS[(namespace, name)]


def test_only_mounted_paths_and_the_port_change() -> None:
    argv = [
        "llama-server",
        "--model",
        "/models/sha256/ab.gguf",
        "--api-key-file",
        "/etc/llamafleet/api-keys/keys",
        "--port",
        "8080",
        "--alias",
        "/models-not-a-mount",
    ]
    assert localise(argv, MOUNTS, port=18080) == [
        "llama-server",
        "--model",
        "/cache/models/sha256/ab.gguf",
        "--api-key-file",
        "/run/keys/keys",
        "--port",
        "18080",
        "--alias",
        "/models-not-a-mount",
    ]
    assert localise(argv, MOUNTS)[argv.index("--port") + 1] == "8080"


def local_deployment() -> dict[str, Any]:
    (deployment,) = [
        o for o in rendered_stack("local").kubernetes_objects if o["kind"] == "Deployment"
    ]
    return copy.deepcopy(deployment)


def test_the_deployed_fetch_server_and_secrets_are_what_runs(tmp_path: Path) -> None:
    deployment = local_deployment()
    template = deployment["spec"]["template"]["spec"]
    pod = pod_from_deployment(deployment, read_secret)
    assert pod.name == "llamafleet-demo-gemma3-270m-cpu-small"
    assert pod.fetch.argv == template["initContainers"][0]["command"]
    server = template["containers"][0]
    assert pod.server.argv == [*server["command"], *server["args"]]
    assert pod.fetch.env["AWS_SHARED_CREDENTIALS_FILE"].endswith("/credentials")

    volumes = lay_out(pod, tmp_path)
    keys = volumes["api-keys"] / "keys"
    assert keys.read_bytes() == SECRETS[("llamafleet-demo", "llamafleet-api-keys")]["keys"]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    credentials = volumes["store-credentials"] / "credentials"
    assert credentials.read_bytes() == b"[default]\n"
    # The server's own mounts map its paths; the fetcher's map the credentials file.
    server_mounts = local_mounts(pod.server, volumes)
    assert server_mounts[MODEL_DIR] == str(volumes["models"])
    assert server_mounts[API_KEY_DIR] == str(volumes["api-keys"])
    fetch_mounts = local_mounts(pod.fetch, volumes)
    local_file = localise([pod.fetch.env["AWS_SHARED_CREDENTIALS_FILE"]], fetch_mounts)[0]
    assert Path(local_file) == credentials


def test_a_changed_deployment_changes_the_fingerprint() -> None:
    deployment = local_deployment()
    before = pod_from_deployment(deployment, read_secret).fingerprint()
    assert pod_from_deployment(local_deployment(), read_secret).fingerprint() == before
    deployment["spec"]["template"]["spec"]["containers"][0]["args"].append("--verbose")
    assert pod_from_deployment(deployment, read_secret).fingerprint() != before
    rotated = {**SECRETS, ("llamafleet-demo", "llamafleet-api-keys"): {"keys": b"new\nscraper\n"}}
    changed = pod_from_deployment(local_deployment(), lambda ns, n: rotated[(ns, n)])
    assert changed.fingerprint() != before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["containers"].append(s["containers"][0]), "one init container"),
        (
            lambda s: s["initContainers"][0]["env"].append(
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            ),
            "env X is a reference",
        ),
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "volume h"),
    ],
)
def test_what_a_native_run_cannot_honour_is_one_clear_error(edit: Any, message: str) -> None:
    deployment = local_deployment()
    edit(deployment["spec"]["template"]["spec"])
    with pytest.raises(ServeError, match=message):
        pod_from_deployment(deployment, read_secret)


def test_exports_name_the_variables_each_client_generation_reads(tmp_path: Path) -> None:
    pod = pod_from_deployment(local_deployment(), read_secret)
    line = client_exports(Served(pod, "http://127.0.0.1:8080/v1", tmp_path / "key", True))
    assert line == (
        "export OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_BASE=http://127.0.0.1:8080/v1"
        f" OPENAI_API_KEY=$(cat {tmp_path / 'key'})"
    )
