"""`llamafleet serve`: run a stack's rendered pods natively on this machine.

For a control plane that runs no containers (the embedded local one), this is how the `local`
stack's model really serves: the init container's exact command fetches and verifies the model
from the store, then llama-server starts with the exact argv the Deployment carries. Only the
mounted paths (model cache, key file) and, if asked, the port are mapped to local ones.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.server_args import API_KEY_DIR, API_KEY_FILE, MODEL_DIR, SERVER_PORT
from infra.render import render

READY_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class NativePod:
    name: str
    fetch: list[str]
    server: list[str]


def native_pods(stack: str) -> list[NativePod]:
    """Each llama-server Deployment of the stack: its fetch command and server argv."""
    pods: list[NativePod] = []
    for obj in render(stack).kubernetes_objects:
        if obj["kind"] != "Deployment":
            continue
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        (fetcher,) = spec["initContainers"]
        (server,) = spec["containers"]
        pods.append(
            NativePod(
                name=f"{obj['metadata']['namespace']}-{obj['metadata']['name']}",
                fetch=list(fetcher["command"]),
                server=[*server["command"], *server["args"]],
            )
        )
    return pods


def localise(argv: list[str], mounts: dict[str, str], port: int | None = None) -> list[str]:
    """Map container paths to local ones (longest prefix first) and optionally the port."""
    local = [_local_path(arg, mounts) for arg in argv]
    if port is not None and "--port" in local:
        local[local.index("--port") + 1] = str(port)
    return local


def _local_path(arg: str, mounts: dict[str, str]) -> str:
    for container_path in sorted(mounts, key=len, reverse=True):
        if arg == container_path or arg.startswith(f"{container_path}/"):
            return mounts[container_path] + arg[len(container_path) :]
    return arg


def run_dir(cache: Path, pod: NativePod) -> Path:
    return cache / "local" / "serve" / pod.name


def start(
    pod: NativePod, llama_server: Path, cache: Path, port: int = SERVER_PORT
) -> tuple[str, Path]:
    """Fetch (verified) and start one pod's server in the background; returns (URL, key file)."""
    state = run_dir(cache, pod)
    models, keys = cache / "models", state / "api-keys"
    models.mkdir(parents=True, exist_ok=True)
    keys.mkdir(parents=True, exist_ok=True)
    mounts = {MODEL_DIR: str(models), API_KEY_DIR: str(keys)}
    fetch = localise(pod.fetch, mounts)
    # The fetcher image's command is a console script of this package: use this environment's.
    fetch[0] = shutil.which(fetch[0], path=str(Path(sys.executable).parent)) or fetch[0]
    subprocess.run(fetch, check=True)

    key_file = keys / Path(API_KEY_FILE).name
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(32) + "\n")
    stop(pod, cache)
    argv = localise(pod.server, mounts, port)
    argv[0] = str(llama_server)
    log = (state / "server.log").open("w")
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    (state / "pid").write_text(str(process.pid))
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, process, state / "server.log")
    return f"{base}/v1", key_file


def stop(pod: NativePod, cache: Path) -> bool:
    pid_file = run_dir(cache, pod) / "pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-2000:]
            raise RuntimeError(f"llama-server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"llama-server not ready after {READY_TIMEOUT_SECONDS} s; see {log}")
