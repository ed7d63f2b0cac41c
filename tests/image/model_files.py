"""Helpers for the live model-file tests: the modelsync CLI as a pod runs it, and the rendered
pod of a stack file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from llama_server import REPO, localize_argv
from support.loopback import free_port
from support.stack_renders import model_objects

from llamafleet.command.render import render
from llamafleet.components.server_args import API_KEY_FILE


def modelsync(*args: str, timeout: float | None = None) -> dict[str, Any]:
    """`python -m llamafleet.modelsync ARGS --json`, asserted to succeed (within `timeout`
    seconds, if given); its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "llamafleet.modelsync", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def rendered_pod(stack: Path) -> dict[str, Any]:
    """The pod spec of the one Deployment `stack` renders."""
    rendered = render(str(stack))
    (deployment,) = [
        o for o in model_objects(rendered.kubernetes_objects) if o["kind"] == "Deployment"
    ]
    return deployment["spec"]["template"]["spec"]


def with_value(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with the value after `flag` replaced by `value`."""
    index = argv.index(flag)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def fetch_as_pod(pod: dict[str, Any], store: str, cache: Path) -> dict[str, Any]:
    """Run the pod's rendered init command here, against `store`, into `cache`, its metrics on
    a free port; its JSON. The pod's fetcher retries a failure for ever: 5 minutes here."""
    fetch = pod["initContainers"][0]["command"]
    assert fetch[:2] == ["modelsync", "fetch"]
    local = with_value(with_value(fetch[2:], "--endpoint-url", store), "--cache-dir", str(cache))
    local = with_value(local, "--metrics-port", str(free_port()))
    return modelsync("fetch", *local, timeout=300)


def server_argv_as_pod(
    pod: dict[str, Any], cache: Path, folder: Path, api_key: str, payload: Path
) -> tuple[list[str], int]:
    """(argv, port): the pod's rendered llama-server argv, run from `payload` with the models
    under `cache`, `api_key` in a key file under `folder` and a free port."""
    (server_container,) = pod["containers"]
    key_file = folder / "api-keys" / Path(API_KEY_FILE).name
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(f"{api_key}\n")
    port = free_port()
    argv = localize_argv(
        [*server_container["command"], *server_container["args"]],
        model_root=cache,
        key_file=key_file,
        port=port,
    )
    argv[0] = str(payload / "llama-server")
    return argv, port
