"""An embeddings model end to end: the llama-server argv the program renders for a model with
`embeddings` (the local stack plus a second declaration of the 270M file), run natively, and the
real gateway in front of it routing `/v1/embeddings` there and nothing else."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_process import Gateway, gateway_venv
from llama_server import LlamaServer, localize_argv
from rendered_argv import CONTAINER, render
from support.loopback import free_port

from llamafleet.components.gateway_config import Backend
from llamafleet.settings.load import stack_file

pytestmark = pytest.mark.image

EMBED = "gemma3-270m-embed"
TEAM = "demo"
# Tokens of the long input: most of a slot's 2048, far past llama-server's default 512 batch.
LONG_INPUT = "word " * 1500


@dataclass(frozen=True)
class Rendered:
    argv: list[str]
    memory_limit_bytes: int


def _embeddings_stack(directory: Path) -> Path:
    """The local stack with the same 270M file declared again as an embeddings model."""
    document = yaml.safe_load(stack_file("local").read_text())
    config = document["config"]
    model = copy.deepcopy(config["llamafleet:models"]["gemma3-270m"])
    for generation_only in ("chatTemplate", "source"):
        model.pop(generation_only, None)
    model |= {"embeddings": {"pooling": "mean"}, "parallel": 1, "replicas": {"min": 1, "max": 1}}
    config["llamafleet:models"][EMBED] = model
    tenant = config["llamafleet:tenants"][TEAM]
    tenant["models"].append(EMBED)
    tenant["quota"] = {"cpus": 12, "memoryGib": 24, "pods": 8}
    path = directory / "Pulumi.embeddings.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity.removesuffix("Mi")) * 1024 * 1024


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    root = tmp_path_factory.mktemp("embeddings")
    out = render(str(_embeddings_stack(root)), root / "out")
    document = yaml.safe_load(
        (out / f"llamafleet-{TEAM}" / f"Deployment-{EMBED}-cpu-small.yaml").read_text()
    )
    (container,) = [
        c for c in document["spec"]["template"]["spec"]["containers"] if c["name"] == CONTAINER
    ]
    return Rendered(
        [*container.get("command", []), *container["args"]],
        _mebibytes(container["resources"]["limits"]["memory"]),
    )


@pytest.fixture(scope="module")
def server(
    payload: Path,
    rendered: Rendered,
    mounts: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LlamaServer]:
    model_root, key_file = mounts
    port = free_port()
    local = localize_argv(rendered.argv, model_root=model_root, key_file=key_file, port=port)
    local[0] = str(payload / "llama-server")
    started = LlamaServer(local, port, tmp_path_factory.mktemp("logs") / "embed.log").start()
    started.wait_ready()
    yield started
    started.stop()


def _post(url: str, body: object, key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _rss_bytes(server: LlamaServer) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_the_rendered_server_embeds_an_input_of_most_of_a_slot(
    server: LlamaServer, rendered: Rendered, api_key: str
) -> None:
    """The pod's batch is a slot's context: 1500 tokens embed (the default batch, 512, would
    refuse them), and the server stays inside the memory its pod is sized for."""
    assert "--embeddings" in rendered.argv and "--n-predict" not in rendered.argv
    status, body = _post(
        f"http://127.0.0.1:{server.port}/v1/embeddings",
        {"model": EMBED, "input": [LONG_INPUT, "short"]},
        api_key,
    )
    assert status == 200, body
    assert [len(item["embedding"]) for item in body["data"]] == [640, 640]
    assert body["usage"]["prompt_tokens"] > 1500
    assert _rss_bytes(server) < rendered.memory_limit_bytes, (
        _rss_bytes(server),
        rendered.memory_limit_bytes,
    )


@pytest.fixture(scope="module")
def gateway(
    server: LlamaServer, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    key = "team-key-" + "0" * 32
    backends = [
        Backend(
            TEAM, EMBED, "cpu-small", f"http://127.0.0.1:{server.port}/v1", 1, 1024, embeddings=True
        ),
        # A chat model: its server is never reached by these requests (refused before routing).
        Backend(TEAM, "chat", "cpu-small", "http://127.0.0.1:9/v1", 1, 64),
    ]
    started = Gateway(
        gateway_venv(), tmp_path_factory.mktemp("gw"), backends, {TEAM: api_key}, {key: TEAM}
    ).start()
    yield started.wait_ready(), key
    started.stop()


def test_the_gateway_routes_embeddings_to_the_embeddings_model(
    gateway: tuple[Gateway, str],
) -> None:
    process, key = gateway
    status, body = _post(
        f"http://127.0.0.1:{process.port}/v1/embeddings",
        {"model": EMBED, "input": "hello"},
        key,
    )
    assert status == 200, body
    assert len(body["data"][0]["embedding"]) == 640


@pytest.mark.parametrize(
    ("path", "model"),
    [("/v1/chat/completions", EMBED), ("/v1/completions", EMBED), ("/v1/embeddings", "chat")],
    ids=["chat to an embeddings model", "completion to it", "embeddings from a chat model"],
)
def test_the_wrong_endpoint_for_a_model_is_a_400(
    gateway: tuple[Gateway, str], path: str, model: str
) -> None:
    process, key = gateway
    body: dict[str, object] = {"model": model, "input": "hello", "prompt": "hello"}
    body["messages"] = [{"role": "user", "content": "hello"}]
    status, answer = _post(f"http://127.0.0.1:{process.port}{path}", body, key)
    assert status == 400, answer
    assert "embeddings" in answer["error"]["message"], answer
