"""Import from an Ollama store built by the test (manifests + sha256-named blobs)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.cli import main
from llamafleet.modelsync.errors import DigestMismatchError, SourceError
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.ollama import (
    ADAPTER_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    PROJECTOR_MEDIA_TYPE,
    discover_ollama,
)
from llamafleet.modelsync.plan import Action, inspect_locals, plan_sync
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import run_sync

PARAMS_MEDIA_TYPE = "application/vnd.ollama.image.params"


def _blob(store: Path, data: bytes) -> dict[str, object]:
    hex_digest = hashlib.sha256(data).hexdigest()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / f"sha256-{hex_digest}").write_bytes(data)
    return {"digest": f"sha256:{hex_digest}", "size": len(data)}


def add_model(
    store: Path,
    ref: tuple[str, str, str, str],
    gguf: bytes,
    extra_layers: dict[str, bytes] | None = None,
) -> str:
    """Writes blobs and a manifest like `ollama pull` does; returns the model blob's hex."""
    layers = [{"mediaType": MODEL_MEDIA_TYPE, **_blob(store, gguf)}]
    layers.append({"mediaType": PARAMS_MEDIA_TYPE, **_blob(store, b'{"temperature": 0.7}')})
    for media_type, data in (extra_layers or {}).items():
        layers.append({"mediaType": media_type, **_blob(store, data)})
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": _blob(store, b"{}"),
        "layers": layers,
    }
    path = store.joinpath("manifests", *ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return hashlib.sha256(gguf).hexdigest()


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
    sources = {source.name: source for source in discover_ollama(ollama_store)}

    assert set(sources) == {"gemma3:270m", "someone/vision:latest"}
    vision = sources["someone/vision:latest"]
    assert vision.origin["kind"] == "ollama"
    assert vision.origin["projectors"] == [
        f"sha256:{hashlib.sha256(b'projector bytes').hexdigest()}"
    ]
    assert vision.origin["adapters"] == [f"sha256:{hashlib.sha256(b'lora').hexdigest()}"]
    assert vision.known_digest == vision.path.name.removeprefix("sha256-")


def test_requested_models_accept_short_names(ollama_store: Path) -> None:
    names = [s.name for s in discover_ollama(ollama_store, ["library/gemma3:270m"])]
    assert names == ["gemma3:270m"]
    with pytest.raises(SourceError, match=r"'gemma3' not found .*has: gemma3:270m"):
        discover_ollama(ollama_store, ["gemma3"])  # means gemma3:latest


def test_missing_blob_is_reported(ollama_store: Path) -> None:
    source = discover_ollama(ollama_store, ["gemma3:270m"])[0]
    source.path.unlink()
    with pytest.raises(SourceError, match=r"blob .* is missing"):
        discover_ollama(ollama_store, ["gemma3:270m"])


def test_manifest_without_model_layer_is_rejected(ollama_store: Path) -> None:
    path = ollama_store / "manifests" / "registry.ollama.ai" / "library" / "gemma3" / "270m"
    document = json.loads(path.read_text())
    document["layers"] = document["layers"][1:]
    path.write_text(json.dumps(document))
    with pytest.raises(SourceError, match=r"expected one application/vnd\.ollama\.image\.model"):
        discover_ollama(ollama_store)


def test_blob_name_is_trusted_unless_verify(ollama_store: Path, tmp_path: Path) -> None:
    source = discover_ollama(ollama_store, ["gemma3:270m"])[0]
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
    result = run_sync(plan_sync(discover_ollama(ollama_store), store, cache), store)

    assert sorted(result.names(Action.UPLOAD)) == ["gemma3:270m", "someone/vision:latest"]
    manifest = store.read_manifest()
    entry = manifest.models["gemma3:270m"]
    blob = next((ollama_store / "blobs").glob(entry.digest.replace(":", "-")))
    stored = store.client.get_object(Bucket=store.location.bucket, Key=entry.key)["Body"].read()
    assert stored == blob.read_bytes()
    assert entry.source["kind"] == "ollama"
    assert manifest.models["someone/vision:latest"].gguf["architecture"] == "qwen2"


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
