"""What a ModelSync asks for, as plain data, and where its models are on this machine.

Shared by the component (which warns at declaration time about sources this machine lacks) and
the dynamic provider (which syncs). No Pulumi import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, cast

from llamafleet.components.config import endpoint_url_problem, region_problem
from llamafleet.modelsync.errors import ModelSyncError
from llamafleet.modelsync.ollama import (
    default_models_dir,
    list_models,
    model_source,
    normalise_request,
)
from llamafleet.modelsync.parts import ModelParts, with_parts
from llamafleet.modelsync.sources import ModelSource
from llamafleet.modelsync.splits import with_split_shards
from llamafleet.modelsync.store import StoreLocation

OLLAMA_SCHEME: Final = "ollama://"
# A stack file has no source directory: what to do about a relative path in it.
SETTINGS_RELATIVE_FIX: Final = "give an absolute path or one under ~/"
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class RequestError(ValueError):
    """Bad ModelSync inputs: one (property, reason) pair per problem."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{prop}: {reason}" for prop, reason in failures))
        self.failures = failures


@dataclass(frozen=True)
class PartSources:
    """A model's files beside its weights, as paths on this machine (absolute, under ~/, or
    relative to the source directory): LoRA adapters in order, and a projector."""

    adapters: tuple[str, ...] = ()
    projector: str | None = None

    def to_props(self) -> dict[str, Any]:
        """`{"adapters": [...], "projector": ...}`, each key only where set."""
        props: dict[str, Any] = {}
        if self.adapters:
            props["adapters"] = list(self.adapters)
        if self.projector is not None:
            props["projector"] = self.projector
        return props


@dataclass(frozen=True)
class SourceSpec:
    """Which models to sync and where this machine keeps them."""

    # Manifest name -> a GGUF path (absolute, or relative to source_dir) or ollama://model:tag.
    models: Mapping[str, str]
    source_dir: str | None = None
    ollama_models: str | None = None  # default: $OLLAMA_MODELS or ~/.ollama/models, at run time
    # Manifest name -> its adapters and projector, for models that have them.
    parts: Mapping[str, PartSources] = field(default_factory=dict[str, PartSources])


def request_props(
    store_url: object,
    spec: SourceSpec,
    endpoint_url: str | None,
    region: str | None,
    checksum_headers: bool = True,
) -> dict[str, Any]:
    """The provider's input properties (`store_url` may be a pulumi Output). `checksumHeaders`
    is present only when off, and `parts` only where a model has adapters or a projector, so
    stacks that use neither record the same inputs as before these existed."""
    props: dict[str, Any] = {
        "storeUrl": store_url,
        "models": dict(spec.models),
        "sourceDir": spec.source_dir,
        "ollamaModels": spec.ollama_models,
        "endpointUrl": endpoint_url,
        "region": region,
    }
    if not checksum_headers:
        props["checksumHeaders"] = False
    if spec.parts:
        props["parts"] = {name: parts.to_props() for name, parts in spec.parts.items()}
    return props


@dataclass(frozen=True)
class SyncRequest:
    """The provider's inputs. Plain data only: no credentials, no clients."""

    store_url: str
    spec: SourceSpec
    endpoint_url: str | None = None
    region: str | None = None
    checksum_headers: bool = True

    def to_props(self) -> dict[str, Any]:
        """The provider's input properties (`request_props`)."""
        return request_props(
            self.store_url, self.spec, self.endpoint_url, self.region, self.checksum_headers
        )

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> SyncRequest:
        """The request in the provider's properties (as `to_props` makes them).

        Raises:
            RequestError: a property is missing or invalid (every problem listed).
        """
        failures = plain_failures(
            props.get("models"),
            props.get("sourceDir"),
            props.get("ollamaModels"),
            props.get("endpointUrl"),
            props.get("region"),
            parts=props.get("parts"),
        ) + store_url_failures(props.get("storeUrl"))
        if failures:
            raise RequestError(failures)
        spec = SourceSpec(
            models=dict(cast(Mapping[str, str], props["models"])),
            source_dir=props.get("sourceDir"),
            ollama_models=props.get("ollamaModels"),
            parts=part_sources(props.get("parts")),
        )
        return cls(
            str(props["storeUrl"]),
            spec,
            props.get("endpointUrl"),
            props.get("region"),
            props.get("checksumHeaders") is not False,
        )


def part_sources(parts: object) -> dict[str, PartSources]:
    """The `parts` property (`PartSources.to_props` per model) read back; entries of another
    shape are left out (`check` reports them)."""
    found: dict[str, PartSources] = {}
    items = cast(Mapping[object, object], parts).items() if isinstance(parts, Mapping) else ()
    for name, part in items:
        fields = cast(Mapping[str, object], part) if isinstance(part, Mapping) else {}
        adapters, projector = fields.get("adapters") or [], fields.get("projector")
        if isinstance(name, str) and isinstance(adapters, list):
            found[name] = PartSources(
                tuple(str(path) for path in cast(list[object], adapters)),
                projector if isinstance(projector, str) else None,
            )
    return found


def store_url_failures(url: object) -> list[tuple[str, str]]:
    """Why `url` is not a store URL s3://BUCKET[/PREFIX], as [("storeUrl", reason)]; [] if it
    is."""
    if not isinstance(url, str):
        return [("storeUrl", "must be a string s3://BUCKET[/PREFIX]")]
    try:
        StoreLocation.parse(url)
    except ModelSyncError as err:
        return [("storeUrl", str(err))]
    return []


def plain_failures(
    models: object,
    source_dir: object,
    ollama_models: object,
    endpoint_url: object,
    region: object,
    *,
    parts: object = None,
) -> list[tuple[str, str]]:
    """Every problem with the plain (never unknown) inputs, as (property, reason)."""
    failures = _models_failures(models, source_dir) + _parts_failures(parts, models, source_dir)
    for prop, value in (("sourceDir", source_dir), ("ollamaModels", ollama_models)):
        if value is not None and not (isinstance(value, str) and Path(value).is_absolute()):
            failures.append((prop, "must be an absolute path"))
    for prop, value, problem in (
        ("endpointUrl", endpoint_url, endpoint_url_problem),
        ("region", region, region_problem),
    ):
        if value is None:
            continue
        reason = problem(value) if isinstance(value, str) else "must be a string"
        if reason is not None:
            failures.append((prop, f"{value!r} {reason}"))
    return failures


def source_problem(source: object, relative_fix: str | None) -> str | None:
    """Why `source` is not something ModelSync can sync (None if it is): an absolute path, a
    path under `~/` (the home of the machine that runs the sync), `ollama://MODEL[:TAG]`, or a
    relative path where `relative_fix` is None (a source directory is given); otherwise a
    relative path is refused, with `relative_fix` as the remedy."""
    if not isinstance(source, str) or not source.strip():
        return "must be a GGUF path or ollama://MODEL[:TAG]"
    if source.startswith(OLLAMA_SCHEME):
        return None if source.removeprefix(OLLAMA_SCHEME) else "names no Ollama model"
    if "://" in source:
        return f"{source!r}: only paths (/…, ~/…) and ollama://MODEL[:TAG] sync"
    if relative_fix is not None and not source_path(source).is_absolute():
        return f"{source!r} is relative: {relative_fix}"
    return None


def part_source_problem(source: object, relative_fix: str | None) -> str | None:
    """`source_problem` for a model's adapter or projector: a file, never ollama://."""
    problem = source_problem(source, relative_fix)
    if problem is None and str(source).startswith(OLLAMA_SCHEME):
        return "adapters and projectors sync from files, not ollama://"
    return problem


def settings_source_problem(source: str) -> str | None:
    """`source_problem` for a stack file's `models.<name>.source` (no source directory)."""
    return source_problem(source, SETTINGS_RELATIVE_FIX)


def source_path(source: str, source_dir: str | None = None) -> Path:
    """A file source as a path on this machine: `~/` expanded, a relative one under source_dir."""
    path = Path(source).expanduser() if source.startswith("~/") else Path(source)
    return path if path.is_absolute() or source_dir is None else Path(source_dir) / path


def _models_failures(models: object, source_dir: object) -> list[tuple[str, str]]:
    if not isinstance(models, Mapping) or not models:
        return [("models", "must map at least one model name to its source")]
    failures: list[tuple[str, str]] = []
    for name, source in cast(Mapping[object, object], models).items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            failures.append(("models", f"{name!r} is not a model name"))
            continue
        problem = source_problem(source, None if source_dir is not None else "set sourceDir")
        if problem is not None:
            failures.append((f"models.{name}", problem))
    return failures


def _parts_failures(parts: object, models: object, source_dir: object) -> list[tuple[str, str]]:
    """Problems with `parts`: {model: {"adapters": [path...], "projector": path}}, each model
    one of `models`, each path a file path (never ollama://)."""
    if parts is None:
        return []
    if not isinstance(parts, Mapping):
        return [("parts", "must map model names to their adapters and projector")]
    known = cast(Mapping[object, object], models) if isinstance(models, Mapping) else {}
    relative_fix = None if source_dir is not None else "set sourceDir"
    failures: list[tuple[str, str]] = []
    for name, part in cast(Mapping[object, object], parts).items():
        fields = cast(Mapping[object, object], part) if isinstance(part, Mapping) else None
        adapters = fields.get("adapters", []) if fields is not None else None
        if name not in known or fields is None or not isinstance(adapters, list):
            failures.append(("parts", f"{name!r}: not a model with adapters and a projector"))
            continue
        paths = [
            *cast(list[object], adapters),
            *([fields["projector"]] if "projector" in fields else []),
        ]
        for path in paths:
            problem = part_source_problem(path, relative_fix)
            if problem is not None:
                failures.append((f"parts.{name}", problem))
    return failures


@dataclass(frozen=True)
class ResolvedSources:
    """The requested models, split by whether this machine holds them (`resolve_sources`)."""

    present: list[ModelSource]  # the ones found on this machine
    absent: dict[str, str]  # name -> why this machine lacks it


def resolve_sources(spec: SourceSpec) -> ResolvedSources:
    """The requested models this machine holds, and why it lacks the others; a split model's
    first shard is followed by its other shards (`splits.with_split_shards`), then its adapters
    and projector (`parts.with_parts`; a model one of whose parts is missing here is absent).
    Reads no model bytes: a stat per file, the headers of split shards and parts and, for
    Ollama, the small manifest files. Shard 1 of an incomplete or mixed split model, or a part
    llama-server would refuse, raises GgufError.
    """
    present: list[ModelSource] = []
    absent: dict[str, str] = {}
    local_parts: dict[str, ModelParts] = {}
    for name, source in spec.models.items():
        if source.startswith(OLLAMA_SCHEME):
            found = _ollama_source(spec, name, source.removeprefix(OLLAMA_SCHEME))
        else:
            found = _file_source(spec, name, source)
        parts = _local_parts(spec, name)
        missing = [path for path in parts.paths if not path.exists()]
        if isinstance(found, str):
            absent[name] = found
        elif missing:
            absent[name] = f"{missing[0]}: no such file on this machine"
        else:
            present.append(found)
            if parts.paths:
                local_parts[name] = parts
    return ResolvedSources(
        with_parts(with_split_shards(present, name_by_prefix=False), local_parts), absent
    )


def _local_parts(spec: SourceSpec, name: str) -> ModelParts:
    """Model `name`'s adapters and projector as paths on this machine (`source_path`)."""
    part = spec.parts.get(name, PartSources())
    return ModelParts(
        tuple(source_path(path, spec.source_dir) for path in part.adapters),
        None if part.projector is None else source_path(part.projector, spec.source_dir),
    )


def _file_source(spec: SourceSpec, name: str, source: str) -> ModelSource | str:
    path = source_path(source, spec.source_dir)
    if not path.exists():
        return f"{path}: no such file on this machine"
    # Anything else that exists (a folder, a device) is a mistake, reported by plan_sync.
    return ModelSource(name, path, {"kind": "file", "path": str(path)})


def _ollama_source(spec: SourceSpec, name: str, ref: str) -> ModelSource | str:
    models_dir = Path(spec.ollama_models) if spec.ollama_models else default_models_dir()
    if not (models_dir / "manifests").is_dir():
        return f"no Ollama store at {models_dir} on this machine"
    wanted = normalise_request(ref)
    for found in list_models(models_dir):
        if found.name == wanted:
            # A store that lists the model but is damaged is an error, not an absence.
            return replace(model_source(models_dir, found), name=name)
    return f"Ollama model {ref!r} is not in {models_dir} on this machine"
