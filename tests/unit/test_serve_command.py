"""`llamafleet serve`: a Deployment as the API server returns it, turned into native processes."""

from __future__ import annotations

import copy
import socket
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.loopback import free_port
from support.stack_renders import model_objects, rendered_stack

from llamafleet.command.serve import (
    NativePod,
    ServeError,
    client_exports,
    lay_out,
    local_mounts,
    localise,
    native_fetch_args,
    pod_from_deployment,
    serve_root,
    start,
    stop,
)
from llamafleet.components.server_args import API_KEY_DIR, MODEL_DIR

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
        o
        for o in model_objects(rendered_stack("local").kubernetes_objects)
        if o["kind"] == "Deployment"
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

    volumes = lay_out(pod.volumes, tmp_path)
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


def test_a_native_fetch_runs_once_and_serves_no_metrics() -> None:
    """The pod's fetcher retries for ever and serves /metrics on a fixed port; run here, it
    fetches once (serve fails with its status) and listens on nothing."""
    pod = pod_from_deployment(local_deployment(), read_secret)
    assert {"--metrics-port", "--retry-seconds"} <= set(pod.fetch.argv)
    native = native_fetch_args(pod.fetch.argv[1:])
    assert native == [
        arg
        for i, arg in enumerate(pod.fetch.argv[1:], start=1)
        if arg not in {"--metrics-port", "--retry-seconds"}
        and pod.fetch.argv[i - 1] not in {"--metrics-port", "--retry-seconds"}
    ]
    assert "--digest" in native and "--cache-dir" in native
    assert native_fetch_args(["fetch", "--metrics-port=9102", "--retry-seconds", "300", "--x"]) == [
        "fetch",
        "--x",
    ]


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
    line = client_exports("http://127.0.0.1:8080/v1", tmp_path / "key")
    assert line == (
        "export OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_BASE=http://127.0.0.1:8080/v1"
        f" OPENAI_API_KEY=$(cat {tmp_path / 'key'})"
    )


# --- the native processes ---------------------------------------------------------------------

FAKE_SERVER = Path(__file__).with_name("fake_llama_server.py")


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable that behaves like llama-server for `serve`; state under a cache of its own."""
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    launcher = tmp_path / "llama-server"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def fake_pod(argv_extra: tuple[str, ...] = ()) -> NativePod:
    pod = pod_from_deployment(local_deployment(), read_secret)
    # The real fetch needs the store: a command of this venv that succeeds stands in for it.
    fetch = replace(pod.fetch, argv=["modelsync", "--help"])
    return replace(
        pod, fetch=fetch, server=replace(pod.server, argv=[*pod.server.argv, *argv_extra])
    )


def state_of(pod: NativePod) -> Path:
    return serve_root() / pod.name


def test_start_serves_on_loopback_and_an_unchanged_pod_is_kept(fake_server: Path) -> None:
    port = free_port()
    served = start(fake_pod(), fake_server, port)
    state = state_of(served.pod)
    try:
        assert served.restarted and served.base_url == f"http://127.0.0.1:{port}/v1"
        # The server's keys are the gateway's and the scraper's: none is handed to clients.
        assert not list(state.glob("client-key*"))
        pid = (state / "pid").read_text()
        again = start(fake_pod(), fake_server, port)
        assert not again.restarted and (state / "pid").read_text() == pid
        changed = start(fake_pod(("--verbose",)), fake_server, port)
        assert changed.restarted and (state / "pid").read_text() != pid
    finally:
        assert stop(state)
    assert not (state / "pid").exists()
    assert not list((state / "volumes").glob("api-keys/*"))  # the keys go with the server
    assert not stop(state)


def test_a_port_another_process_holds_is_one_line_and_starts_nothing(fake_server: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} is taken"):
            start(fake_pod(), fake_server, port)
    assert not (state_of(fake_pod()) / "pid").exists()


def test_a_missing_llama_server_is_refused_before_the_running_one_stops(
    fake_server: Path, tmp_path: Path
) -> None:
    port = free_port()
    served = start(fake_pod(), fake_server, port)
    state = state_of(served.pod)
    try:
        with pytest.raises(ServeError, match="not an executable llama-server"):
            start(fake_pod(("--verbose",)), tmp_path / "no-such-binary", port)
        assert start(fake_pod(), fake_server, port).restarted is False  # still the same server
    finally:
        stop(state)


def test_a_pid_file_naming_another_process_signals_nothing(fake_server: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    state = state_of(fake_pod())
    state.mkdir(parents=True)
    try:
        # As after a reboot: the number is a live process's, the start time is not its own.
        (state / "pid").write_text(f"{bystander.pid} 1")
        assert stop(state) is False
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
