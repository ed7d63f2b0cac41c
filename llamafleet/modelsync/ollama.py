"""Read an Ollama model store: manifests name models, blobs (named by sha256) hold the GGUF.

Layout: `manifests/<registry>/<namespace>/<model>/<tag>` (Docker v2 JSON) and
`blobs/sha256-<hex>`. The weights are the layer of media type
`application/vnd.ollama.image.model`. A model with a projector (vision) or adapter (LoRA) layer
is skipped, naming the `sync` command that stores it whole from its blobs: importing its base
weights alone would serve the base model under the fine-tuned or multimodal name. The params
layer (Ollama's Modelfile PARAMETERs) is mapped to the llama-server
settings it has (`suggested_settings`); the rest is listed as dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from llamafleet.modelsync.digest import parse_digest
from llamafleet.modelsync.errors import ModelSyncError, SourceError
from llamafleet.modelsync.sources import ModelSource

MODEL_MEDIA_TYPE: Final = "application/vnd.ollama.image.model"
PROJECTOR_MEDIA_TYPE: Final = "application/vnd.ollama.image.projector"
ADAPTER_MEDIA_TYPE: Final = "application/vnd.ollama.image.adapter"
PARAMS_MEDIA_TYPE: Final = "application/vnd.ollama.image.params"
TEMPLATE_MEDIA_TYPE: Final = "application/vnd.ollama.image.template"
# Ollama PARAMETERs with a llama-server setting of a model (llamafleet:models.<name>): the
# setting's key path. Sampling keys are SamplingDefaults' (--temp, --top-k, ...).
PARAMETER_SETTINGS: Final[dict[str, tuple[str, ...]]] = {
    "num_ctx": ("contextLength",),
    "stop": ("sampling", "stop"),
    "temperature": ("sampling", "temperature"),
    "top_k": ("sampling", "topK"),
    "top_p": ("sampling", "topP"),
    "min_p": ("sampling", "minP"),
    "repeat_penalty": ("sampling", "repeatPenalty"),
    "seed": ("sampling", "seed"),
}
DEFAULT_REGISTRY: Final = "registry.ollama.ai"
DEFAULT_NAMESPACE: Final = "library"


def default_models_dir() -> Path:
    """$OLLAMA_MODELS, else ~/.ollama/models: Ollama's default when it runs as the user (its
    Linux service keeps models in /usr/share/ollama/.ollama/models, per Ollama's FAQ)."""
    configured = os.environ.get("OLLAMA_MODELS")
    return Path(configured) if configured else Path.home() / ".ollama" / "models"


@dataclass(frozen=True)
class OllamaRef:
    """A model as its manifest path names it: `manifests/<registry>/<namespace>/<model>/<tag>`."""

    registry: str
    namespace: str
    model: str
    tag: str

    @property
    def name(self) -> str:
        """`model:tag`, prefixed by the namespace (and registry) when not Ollama's defaults."""
        base = f"{self.model}:{self.tag}"
        if self.registry != DEFAULT_REGISTRY:
            return f"{self.registry}/{self.namespace}/{base}"
        if self.namespace != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{base}"
        return base


def normalise_request(text: str) -> str:
    """What a user typed (`gemma3`, `gemma3:270m`, `me/m:t`) as the name `OllamaRef` gives."""
    name = text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"
    if name.startswith(f"{DEFAULT_REGISTRY}/"):
        name = name.removeprefix(f"{DEFAULT_REGISTRY}/")
    return name.removeprefix(f"{DEFAULT_NAMESPACE}/")


def list_models(models_dir: Path) -> list[OllamaRef]:
    """Every model with a manifest in the Ollama store `models_dir`, sorted by name.

    Raises:
        SourceError: `models_dir` has no `manifests/` folder.
    """
    manifests = models_dir / "manifests"
    if not manifests.is_dir():
        raise SourceError(f"{models_dir}: not an Ollama store (no manifests/ folder)")
    refs = [
        OllamaRef(*path.relative_to(manifests).parts)
        for path in manifests.glob("*/*/*/*")
        if path.is_file()
    ]
    return sorted(refs, key=lambda ref: ref.name)


def _manifest_layers(path: Path) -> list[dict[str, object]]:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SourceError(f"{path}: unreadable Ollama manifest: {err}") from err
    layers = document.get("layers") if isinstance(document, dict) else None
    if not isinstance(layers, list):
        raise SourceError(f"{path}: Ollama manifest has no layers list")
    return [cast(dict[str, object], layer) for layer in layers if isinstance(layer, dict)]


def _layer_digests(layers: list[dict[str, object]], media_type: str) -> list[str]:
    return [str(layer.get("digest")) for layer in layers if layer.get("mediaType") == media_type]


def suggested_settings(parameters: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """(the model settings Ollama's PARAMETERs map to, the parameters that map to none, sorted).

    `num_ctx` becomes `contextLength` (per slot); `stop`, `temperature`, `top_k`, `top_p`,
    `min_p`, `repeat_penalty` and `seed` the `sampling` block; anything else (num_predict,
    mirostat, num_gpu, ...) has no setting and is dropped.
    """
    settings: dict[str, object] = {}
    dropped: list[str] = []
    for key in sorted(parameters):
        path = PARAMETER_SETTINGS.get(key)
        if path is None:
            dropped.append(key)
            continue
        value = parameters[key]
        if key == "stop" and isinstance(value, str):
            value = [value]
        target = settings
        for part in path[:-1]:
            target = cast(dict[str, object], target.setdefault(part, {}))
        target[path[-1]] = value
    return settings, dropped


def _json_blob(models_dir: Path, layers: list[dict[str, object]], media_type: str) -> object:
    """The parsed JSON of the first layer of `media_type`; None when there is none or it is
    unreadable (the params are advice; the weights are what must be right)."""
    for digest in _layer_digests(layers, media_type):
        try:
            blob = models_dir / "blobs" / f"sha256-{parse_digest(digest)}"
            return json.loads(blob.read_bytes())
        except (ModelSyncError, OSError, ValueError):
            return None
    return None


def model_source(models_dir: Path, ref: OllamaRef) -> ModelSource:
    """The source for `ref`: its weights blob (`blobs/sha256-<hex>`), the digest the blob's name
    vouches for, and an `ollama` origin with the settings its PARAMETERs suggest, those dropped,
    and whether Ollama formatted chats with a template layer of its own.

    Raises:
        SourceError: the manifest is unreadable or has no layers list, it has not exactly one
            model layer (a cloud-only entry or an incomplete pull has none), it has an adapter
            or projector layer, that layer's digest is malformed, or the blob is missing or not
            the size the manifest gives.
    """
    manifest = models_dir / "manifests" / ref.registry / ref.namespace / ref.model / ref.tag
    layers = _manifest_layers(manifest)
    model_layers = [layer for layer in layers if layer.get("mediaType") == MODEL_MEDIA_TYPE]
    if len(model_layers) != 1:
        raise SourceError(
            f"{ref.name}: expected one {MODEL_MEDIA_TYPE} layer, found {len(model_layers)}"
            " (a cloud-only model or an incomplete pull has none)"
        )
    extras = {
        "adapter": _layer_digests(layers, ADAPTER_MEDIA_TYPE),
        "projector": _layer_digests(layers, PROJECTOR_MEDIA_TYPE),
    }
    if any(extras.values()):
        blobs = models_dir / "blobs"
        options = " ".join(
            f"--{option} {blobs / digest.replace(':', '-', 1)}"
            for option, digests in extras.items()
            for digest in digests
        )
        model_blob = blobs / str(model_layers[0].get("digest")).replace(":", "-", 1)
        raise SourceError(
            f"{ref.name}: has {' and '.join(k for k, v in extras.items() if v)} layers; its "
            "base weights alone would serve the base model under this name: sync the model "
            f"whole from its blobs: `sync {model_blob} {options}`"
        )
    layer = model_layers[0]
    try:
        hex_digest = parse_digest(str(layer.get("digest")))
    except ModelSyncError as err:
        raise SourceError(f"{manifest}: model layer: {err}") from err
    blob = models_dir / "blobs" / f"sha256-{hex_digest}"
    try:
        blob_size = blob.stat().st_size
    except OSError as err:
        raise SourceError(f"{ref.name}: blob {blob} is missing: {err.strerror}") from err
    if blob_size != layer.get("size"):
        raise SourceError(
            f"{ref.name}: blob {blob} has {blob_size} bytes, manifest says {layer.get('size')}"
        )
    params = _json_blob(models_dir, layers, PARAMS_MEDIA_TYPE)
    settings, dropped = suggested_settings(
        cast(dict[str, object], params) if isinstance(params, dict) else {}
    )
    origin: dict[str, object] = {
        "kind": "ollama",
        "model": ref.name,
        "registry": ref.registry,
        "suggestedSettings": settings,
        "droppedParameters": dropped,
        "ollamaTemplate": bool(_layer_digests(layers, TEMPLATE_MEDIA_TYPE)),
    }
    return ModelSource(ref.name, blob, origin, known_digest=hex_digest)


@dataclass(frozen=True)
class OllamaScan:
    """What an Ollama store offers: a source per usable model, and why each other was skipped
    (model name -> one-line reason)."""

    sources: list[ModelSource]
    skipped: dict[str, str]


def discover_ollama(models_dir: Path, requested: list[str] | None = None) -> OllamaScan:
    """Sources for the requested models (`model[:tag]`), or every model in the store; a model
    whose manifest is unusable (no layers, no model layer, a missing blob, an adapter or a
    projector) is skipped with its reason while the others are imported.

    Raises:
        SourceError: nothing was requested and the store holds no models, or a requested
            model is not in the store.
    """
    refs = {ref.name: ref for ref in list_models(models_dir)}
    if not requested:
        if not refs:
            raise SourceError(f"{models_dir}: the Ollama store holds no models")
        wanted = list(refs.values())
    else:
        wanted = []
        for text in requested:
            ref = refs.get(normalise_request(text))
            if ref is None:
                known = ", ".join(refs) or "none"
                raise SourceError(f"Ollama model {text!r} not found in {models_dir} (has: {known})")
            wanted.append(ref)
    scan = OllamaScan([], {})
    for ref in wanted:
        try:
            scan.sources.append(model_source(models_dir, ref))
        except SourceError as err:
            scan.skipped[ref.name] = str(err)
    return scan
