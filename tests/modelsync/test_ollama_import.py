"""Import from an Ollama store built by the test (manifests + sha256-named blobs)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.ollama_store import add_model
from support.reference_gguf import write_adapter, write_projector, write_reference
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.components.server_args import SamplingDefaults
from llamafleet.modelsync.cli import PARTIAL_IMPORT, main
from llamafleet.modelsync.digest import format_digest, hash_file
from llamafleet.modelsync.errors import DigestMismatchError, SourceError
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.ollama import (
    ADAPTER_MEDIA_TYPE,
    PROJECTOR_MEDIA_TYPE,
    discover_ollama,
    suggested_settings,
)
from llamafleet.modelsync.plan import Action, inspect_locals, plan_sync
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import run_sync


@pytest.fixture
def ollama_store(tmp_path: Path) -> Path:
    store = tmp_path / "ollama" / "models"
    gguf_a = write_gguf(tmp_path / "a.gguf", GgufSpec(fill=b"a")).read_bytes()
    gguf_b = write_gguf(tmp_path / "b.gguf", GgufSpec(fill=b"b", architecture="qwen2")).read_bytes()
    add_model(store, ("registry.ollama.ai", "library", "gemma3", "270m"), gguf_a)
    add_model(
        store,
        ("registry.ollama.ai", "someone", "vision", "latest"),
        gguf_b,
        {PROJECTOR_MEDIA_TYPE: b"projector bytes", ADAPTER_MEDIA_TYPE: b"lora"},
    )
    return store


def test_discovers_models_named_like_ollama(ollama_store: Path) -> None:
    scan = discover_ollama(ollama_store)
    sources = {source.name: source for source in scan.sources}

    assert set(sources) == {"gemma3:270m"}
    gemma = sources["gemma3:270m"]
    assert gemma.origin["kind"] == "ollama"
    assert gemma.known_digest == gemma.path.name.removeprefix("sha256-")


def test_a_model_with_an_adapter_or_projector_is_skipped_loudly(ollama_store: Path) -> None:
    """Its base weights alone would be served under the fine-tuned or vision model's name."""
    scan = discover_ollama(ollama_store)

    reason = scan.skipped["someone/vision:latest"]
    assert "has adapter and projector layers" in reason
    assert "would serve the base model under this name" in reason
    assert f"`sync {ollama_store / 'blobs'}/sha256-" in reason


def test_the_skip_names_a_sync_that_stores_the_model_whole(
    tmp_path: Path, store: RemoteStore, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    models_dir = tmp_path / "ollama" / "models"
    files = {
        "model": write_reference(tmp_path / "m.gguf", "llama"),
        ADAPTER_MEDIA_TYPE: write_adapter(tmp_path / "a.gguf", "llama"),
        PROJECTOR_MEDIA_TYPE: write_projector(tmp_path / "p.gguf"),
    }
    add_model(
        models_dir,
        ("registry.ollama.ai", "someone", "tuned", "latest"),
        files["model"].read_bytes(),
        {media: path.read_bytes() for media, path in files.items() if media != "model"},
    )
    reason = discover_ollama(models_dir).skipped["someone/tuned:latest"]
    command = reason.split("`")[1].split()
    assert command[0] == "sync"

    argv = [*command, store.location.url, "--endpoint-url", endpoint, "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    entry = store.read_manifest().models[Path(command[1]).stem]
    assert entry.digest == format_digest(hash_file(files["model"]))
    assert [a.digest for a in entry.adapters] == [
        format_digest(hash_file(files[ADAPTER_MEDIA_TYPE]))
    ]
    assert entry.projector is not None


def test_requested_models_accept_short_names(ollama_store: Path) -> None:
    names = [s.name for s in discover_ollama(ollama_store, ["library/gemma3:270m"]).sources]
    assert names == ["gemma3:270m"]
    with pytest.raises(SourceError, match=r"'gemma3' not found .*has: gemma3:270m"):
        discover_ollama(ollama_store, ["gemma3"])  # means gemma3:latest


def test_missing_blob_is_reported_and_skipped(ollama_store: Path) -> None:
    source = discover_ollama(ollama_store, ["gemma3:270m"]).sources[0]
    source.path.unlink()
    scan = discover_ollama(ollama_store, ["gemma3:270m"])
    assert scan.sources == []
    assert re.search(r"blob .* is missing", scan.skipped["gemma3:270m"])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda doc: doc | {"layers": doc["layers"][1:]}, r"expected one .*found 0 \(a cloud"),
        (lambda doc: doc | {"layers": []}, r"expected one .*found 0"),
        (lambda doc: {"schemaVersion": 2}, "has no layers list"),
    ],
    ids=["no-model-layer", "no-layers", "no-layers-list"],
)
def test_unusable_manifests_are_skipped_while_the_others_import(
    ollama_store: Path, tmp_path: Path, damage: Callable[[dict[str, Any]], Any], reason: str
) -> None:
    gguf = write_gguf(tmp_path / "c.gguf", GgufSpec(fill=b"c")).read_bytes()
    add_model(ollama_store, ("registry.ollama.ai", "library", "good", "1b"), gguf)
    path = ollama_store / "manifests" / "registry.ollama.ai" / "library" / "gemma3" / "270m"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))

    scan = discover_ollama(ollama_store)

    assert [s.name for s in scan.sources] == ["good:1b"]
    assert re.search(reason, scan.skipped["gemma3:270m"]), scan.skipped


def test_parameters_map_to_settings_and_the_rest_is_dropped() -> None:
    settings, dropped = suggested_settings(
        {
            "num_ctx": 8192,
            "stop": ["<end_of_turn>", "<eos>"],
            "temperature": 1.0,
            "top_k": 64,
            "top_p": 0.95,
            "min_p": 0.0,
            "repeat_penalty": 1.1,
            "seed": 42,
            "num_predict": 128,
            "mirostat": 2,
        }
    )
    assert settings == {
        "contextLength": 8192,
        "sampling": {
            "stop": ["<end_of_turn>", "<eos>"],
            "temperature": 1.0,
            "topK": 64,
            "topP": 0.95,
            "minP": 0.0,
            "repeatPenalty": 1.1,
            "seed": 42,
        },
    }
    assert dropped == ["mirostat", "num_predict"]
    assert SamplingDefaults.model_validate(settings["sampling"]).top_k == 64


def test_a_single_stop_word_becomes_a_list() -> None:
    assert suggested_settings({"stop": "User:"})[0] == {"sampling": {"stop": ["User:"]}}


def test_blob_name_is_trusted_unless_verify(ollama_store: Path, tmp_path: Path) -> None:
    source = discover_ollama(ollama_store, ["gemma3:270m"]).sources[0]
    data = bytearray(source.path.read_bytes())
    data[-1] ^= 1
    source.path.write_bytes(bytes(data))  # blob no longer matches its name
    trusted = inspect_locals([source], HashCache(tmp_path / "c1"))
    assert trusted["gemma3:270m"] is not None
    with pytest.raises(DigestMismatchError, match="not its name's"):
        inspect_locals([source], HashCache(tmp_path / "c2"), verify_known=True)


@pytest.mark.s3
def test_import_uploads_model_layers_and_records_ollama_source(
    ollama_store: Path, store: RemoteStore, cache: HashCache
) -> None:
    result = run_sync(plan_sync(discover_ollama(ollama_store).sources, store, cache), store)

    assert sorted(result.names(Action.UPLOAD)) == ["gemma3:270m"]
    manifest = store.read_manifest()
    entry = manifest.models["gemma3:270m"]
    blob = next((ollama_store / "blobs").glob(entry.digest.replace(":", "-")))
    stored = store.client.get_object(Bucket=store.location.bucket, Key=entry.key)["Body"].read()
    assert stored == blob.read_bytes()
    assert entry.source["kind"] == "ollama"
    assert entry.source["suggestedSettings"] == {"sampling": {"temperature": 0.7}}
    assert "someone/vision:latest" not in manifest.models


@pytest.mark.s3
def test_import_cli_with_ollama_models_env(
    ollama_store: Path,
    store: RemoteStore,
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_store))
    argv = ["import-ollama", store.location.url, "gemma3:270m", "--endpoint-url", endpoint]
    argv += ["--json", "--verify", "--cache-dir", str(tmp_path / "hc")]

    assert main(argv) == 0
    assert list(store.read_manifest().models) == ["gemma3:270m"]


@pytest.mark.s3
def test_a_partial_import_says_so_in_its_status_and_one_line_per_skip(
    ollama_store: Path,
    store: RemoteStore,
    endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["import-ollama", store.location.url, "--models-dir", str(ollama_store)]
    argv += ["--endpoint-url", endpoint, "--cache-dir", str(tmp_path / "hc")]

    assert main(argv) == PARTIAL_IMPORT
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "skipped someone/vision:latest: " in err
    assert (
        'gemma3:270m: settings from its Ollama parameters: {"sampling": {"temperature": 0.7}}'
        in out
    )
    assert list(store.read_manifest().models) == ["gemma3:270m"]


def test_nothing_importable_is_one_error(
    ollama_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["import-ollama", "s3://bucket/p", "someone/vision", "--models-dir", str(ollama_store)]

    assert main(argv) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no model in" in err and "adapter and projector" in err
