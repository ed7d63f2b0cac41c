from __future__ import annotations

from infra.serve_local import localise, native_pods

MOUNTS = {"/models": "/cache/models", "/etc/llamafleet/api-keys": "/run/keys"}


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


def test_the_local_stack_runs_the_rendered_fetch_and_server() -> None:
    (pod,) = native_pods("local")
    assert pod.name == "llamafleet-demo-gemma3-270m-cpu-small"
    assert pod.fetch[:2] == ["modelsync", "fetch"]
    assert pod.server[0] == "llama-server"
    assert "--threads" in pod.server
