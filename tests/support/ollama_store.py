"""An Ollama model store as `ollama pull` leaves it, built by the tests.

`manifests/<registry>/<namespace>/<model>/<tag>` holds a Docker v2 manifest (JSON) whose config
and layers name blobs by digest; `blobs/sha256-<hex>` holds each blob. The GGUF is the layer of
media type `application/vnd.ollama.image.model` (llamafleet/modelsync/ollama.py reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from llamafleet.modelsync.ollama import MODEL_MEDIA_TYPE, PARAMS_MEDIA_TYPE

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
LICENSE_MEDIA_TYPE = "application/vnd.ollama.image.license"
# Where `ollama pull NAME:TAG` puts a library model's manifest.
LIBRARY = ("registry.ollama.ai", "library")
Layer = dict[str, object]


def blob(models_dir: Path, data: bytes, media_type: str | None = None) -> Layer:
    """Store `data` as `blobs/sha256-<hex>`; its descriptor (`mediaType` when given)."""
    hex_digest = hashlib.sha256(data).hexdigest()
    (models_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (models_dir / "blobs" / f"sha256-{hex_digest}").write_bytes(data)
    return _descriptor(media_type, hex_digest, len(data))


def blob_file(models_dir: Path, path: Path, media_type: str = MODEL_MEDIA_TYPE) -> Layer:
    """Store the file at `path` as a blob (hard-linked where it can be, else copied): a real
    model is not read into memory."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    target = models_dir / "blobs" / f"sha256-{digest.hexdigest()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    return _descriptor(media_type, digest.hexdigest(), path.stat().st_size)


def missing_blob(data: bytes, media_type: str = MODEL_MEDIA_TYPE) -> Layer:
    """The descriptor of a blob that is not in the store (an interrupted pull)."""
    return _descriptor(media_type, hashlib.sha256(data).hexdigest(), len(data))


def _descriptor(media_type: str | None, hex_digest: str, size: int) -> Layer:
    described: Layer = {"mediaType": media_type} if media_type else {}
    return described | {"digest": f"sha256:{hex_digest}", "size": size}


def write_manifest(
    models_dir: Path,
    ref: tuple[str, str, str, str],
    layers: list[Layer],
    config: dict[str, object] | None = None,
) -> Path:
    """`manifests/<registry>/<namespace>/<model>/<tag>` naming `layers` and a config blob,
    written compact as Ollama (Go's encoding/json) writes it."""
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": blob(models_dir, json.dumps(config or {}).encode(), CONFIG_MEDIA_TYPE),
        "layers": layers,
    }
    path = models_dir.joinpath("manifests", *ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, separators=(",", ":")))
    return path


def add_model(
    models_dir: Path,
    ref: tuple[str, str, str, str],
    gguf: bytes,
    extra_layers: dict[str, bytes] | None = None,
) -> str:
    """A model as `ollama pull` writes it (its GGUF, params `{"temperature": 0.7}`, and
    `extra_layers`, media type -> bytes); returns the model blob's hex digest."""
    layers = [blob(models_dir, gguf, MODEL_MEDIA_TYPE)]
    layers.append(blob(models_dir, b'{"temperature": 0.7}', PARAMS_MEDIA_TYPE))
    for media_type, data in (extra_layers or {}).items():
        layers.append(blob(models_dir, data, media_type))
    write_manifest(models_dir, ref, layers)
    return hashlib.sha256(gguf).hexdigest()
