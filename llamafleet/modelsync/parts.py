"""A model's files beside its weights, as the pinned llama-server loads them: LoRA adapters
(`--lora`, `--lora-scaled`) and a multimodal projector (`--mmproj`). What it would refuse is
refused first, in one line, before anything is hashed or uploaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from llamafleet.modelsync.errors import GgufError, SourceError
from llamafleet.modelsync.gguf import read_raw
from llamafleet.modelsync.sources import (
    MemberRole,
    ModelSource,
    adapter_member,
    projector_member,
)

PartRole = Literal["adapter", "projector"]

# tools/mtmd (clip.cpp, clip-impl.h) of the pinned build: a projector's architecture and the
# encoders it may declare.
PROJECTOR_ARCHITECTURE: Final = "clip"
_ENCODER_KEYS: Final = ("clip.has_vision_encoder", "clip.has_audio_encoder")


def role_of(metadata: Mapping[str, object]) -> PartRole | None:
    """What a file is beside a model, from its header's metadata (gguf.read_raw): "adapter"
    (`general.type` adapter), "projector" (`general.architecture` clip) or None for anything
    else (a model's own weights)."""
    if metadata.get("general.type") == "adapter":
        return "adapter"
    if metadata.get("general.architecture") == PROJECTOR_ARCHITECTURE:
        return "projector"
    return None


def check_part(
    path: Path,
    role: PartRole,
    model_architecture: str | None,
    metadata: Mapping[str, object] | None = None,
) -> None:
    """Refuse `path` as the model's `role` where the pinned llama-server would:

    - an adapter needs `general.type` adapter, `adapter.type` lora and the model's
      `general.architecture` (llama_adapter_lora_init_impl, src/llama-adapter.cpp: "expect
      general.type to be 'adapter'", "model arch and LoRA arch mismatch", "expect adapter.type
      to be 'lora'");
    - a projector needs `general.architecture` clip and a vision or audio encoder
      (`clip.has_vision_encoder`, `clip.has_audio_encoder`; clip.cpp asserts one for its
      modality).

    `model_architecture` None skips the architecture match (the model is not at hand);
    `metadata` is the file's header when the caller has read it already.

    Raises:
        GgufError: one line naming the file, what it is and why it cannot be `role`.
    """
    header = read_raw(path).metadata if metadata is None else metadata
    problem = _part_problem(header, role, model_architecture)
    if problem is not None:
        raise GgufError(f"{path}: cannot be the model's {role}: {problem}")


def _part_problem(
    metadata: Mapping[str, object], role: PartRole, model_architecture: str | None
) -> str | None:
    architecture = metadata.get("general.architecture")
    if role == "adapter":
        return _adapter_problem(
            metadata.get("general.type"),
            metadata.get("adapter.type"),
            architecture,
            model_architecture,
        )
    if architecture != PROJECTOR_ARCHITECTURE:
        return (
            f"architecture {architecture!r}, not {PROJECTOR_ARCHITECTURE!r}: not a projector "
            "(mmproj) file"
        )
    if not any(metadata.get(key) is True for key in _ENCODER_KEYS):
        return "a clip file with neither a vision nor an audio encoder"
    return None


def _adapter_problem(
    general_type: object, adapter_type: object, architecture: object, model_architecture: object
) -> str | None:
    if general_type != "adapter":
        return f"general.type is {general_type!r}, not 'adapter': not a LoRA adapter"
    if adapter_type != "lora":
        return f"adapter.type is {adapter_type!r}; llama-server loads only 'lora' adapters"
    if model_architecture is not None and architecture != model_architecture:
        return (
            f"an adapter for {architecture!r}, the model is {model_architecture!r} "
            "(llama-server: model arch and LoRA arch mismatch)"
        )
    return None


@dataclass(frozen=True)
class ModelParts:
    """A model's files beside its weights: LoRA adapters (llama-server --lora), in order, and a
    vision projector (--mmproj)."""

    adapters: tuple[Path, ...] = ()
    projector: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every part, adapters first."""
        return (*self.adapters, *((self.projector,) if self.projector is not None else ()))


def with_parts(sources: list[ModelSource], parts: Mapping[str, ModelParts]) -> list[ModelSource]:
    """`sources`, each model that has parts followed by them as member sources (after its
    shards, if any); a model's members come right after it, in the order adapters, projector.

    Each part's header is checked against its model's architecture: a part llama-server would
    refuse raises GgufError (`check_part`).

    Raises:
        SourceError: `parts` names a model that is not among `sources`, or gives a model the
            same adapter twice.
    """
    models = {source.name: source.path for source in sources if source.member_of is None}
    unknown = sorted(set(parts) - set(models))
    if unknown:
        raise SourceError(f"adapters or projector given for no model: {', '.join(unknown)}")
    for name, found in parts.items():
        adapters = [path.resolve() for path in found.adapters]
        twice = sorted({str(path) for path in adapters if adapters.count(path) > 1})
        if twice:
            raise SourceError(
                f"{name}: adapter {twice[0]} given twice; llama-server would apply it twice"
            )
    expanded: list[ModelSource] = []
    for index, source in enumerate(sources):
        expanded.append(source)
        owner = source.member_of or source.name
        following = sources[index + 1] if index + 1 < len(sources) else None
        if owner not in parts or (following is not None and following.member_of == owner):
            continue
        found = parts[owner]
        architecture = read_raw(models[owner]).metadata.get("general.architecture")
        model_architecture = architecture if isinstance(architecture, str) else None
        for path in found.adapters:
            check_part(path, "adapter", model_architecture)
        if found.projector is not None:
            check_part(found.projector, "projector", None)
        expanded += [
            _member(adapter_member(owner, i), path, owner, "adapter")
            for i, path in enumerate(found.adapters)
        ]
        if found.projector is not None:
            expanded.append(_member(projector_member(owner), found.projector, owner, "projector"))
    return expanded


def _member(name: str, path: Path, owner: str, role: MemberRole) -> ModelSource:
    return ModelSource(name, path, {"kind": "file", "path": str(path)}, member_of=owner, role=role)
