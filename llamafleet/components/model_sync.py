"""ModelSync: GGUF files (from folders or an Ollama store) uploaded, content-addressed, to a
ModelStore; its output is the manifest InferenceService consumes (digest, size, GGUF metadata).

Model bytes never pass through Pulumi: a dynamic provider
(llamafleet.components.model_sync_provider) runs `modelsync`, which hashes a file once and
remembers it. Inputs are plain data; credentials come from the AWS credential chain of the machine
running `pulumi up`, and never reach the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi.dynamic

from llamafleet.components.model_sources import (
    PartSources,
    RequestError,
    SourceSpec,
    plain_failures,
    request_props,
    resolve_sources,
)
from llamafleet.components.model_sync_provider import ModelSyncProvider
from llamafleet.modelsync.manifest import ModelEntry


@dataclass(frozen=True)
class ModelSyncArgs:
    """Which models to sync, from where on this machine, to which store.

    Raises:
        RequestError: a model name or source, a path, the endpoint or the region is invalid
            (every problem listed; `store_url` is checked by the provider).
    """

    # s3://BUCKET[/PREFIX], e.g. ModelStore.store_url.
    store_url: pulumi.Input[str]
    # Manifest name -> GGUF path (absolute, or relative to source_dir) or ollama://MODEL[:TAG].
    models: Mapping[str, str]
    # Absolute folder that relative sources are under; needed if any source is relative.
    source_dir: str | None = None
    # The Ollama store; default $OLLAMA_MODELS or ~/.ollama/models where `pulumi up` runs.
    ollama_models: str | None = None
    endpoint_url: str | None = None  # S3-compatible endpoint (on-prem); default: AWS S3
    region: str | None = None  # the store's region; default: boto3's (AWS_REGION, profile)
    checksum_headers: bool = True  # False: no x-amz-checksum-* headers (RemoteStore)
    # Manifest name -> the model's LoRA adapters and projector (file paths), synced into its
    # entry; only for models that have them.
    parts: Mapping[str, PartSources] = field(default_factory=dict[str, PartSources])

    def __post_init__(self) -> None:
        parts = {name: part.to_props() for name, part in self.parts.items()}
        failures = plain_failures(
            self.models,
            self.source_dir,
            self.ollama_models,
            self.endpoint_url,
            self.region,
            parts=parts or None,
        )
        if failures:
            raise RequestError(failures)


class ModelManifest(pulumi.dynamic.Resource, module="models", name="ModelManifest"):
    """The dynamic resource: one sync of a set of models to one store."""

    manifest: pulumi.Output[dict[str, Any]]
    absent: pulumi.Output[list[str]]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            ModelSyncProvider(), name, props | {"manifest": None, "absent": None}, opts
        )


class ModelSync(pulumi.ComponentResource):
    """Syncs `args.models` to the store, through one `ModelManifest`.

    `manifest` maps each model name to its entry (digest, size, GGUF metadata); `digests` maps
    it to its digest (sha256:HEX). A source this machine lacks is warned about and keeps its
    last entry (from the state, else the store's manifest); one known to neither fails `up`.
    """

    manifest: pulumi.Output[dict[str, Any]]
    digests: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: ModelSyncArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:models:ModelSync", name, None, opts)
        spec = SourceSpec(args.models, args.source_dir, args.ollama_models, args.parts)
        self._warn_absent(spec)
        resource = ModelManifest(
            f"{name}-manifest",
            request_props(
                args.store_url, spec, args.endpoint_url, args.region, args.checksum_headers
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.manifest = resource.manifest
        self.digests = resource.manifest.apply(
            lambda models: {
                key: digest
                for name, entry in (models or {}).items()
                for key, digest in file_digests(name, entry).items()
            }
        )
        self.register_outputs({"manifest": self.manifest, "digests": self.digests})

    def _warn_absent(self, spec: SourceSpec) -> None:
        # Said here, by the program, because a provider's own log lines may not reach the user.
        for model, reason in sorted(resolve_sources(spec).absent.items()):
            pulumi.log.warn(
                f"model {model}: {reason}; the stack keeps its last synced manifest entry"
                " (nothing is uploaded or deleted)",
                resource=self,
            )


def file_digests(name: str, entry: dict[str, Any]) -> dict[str, str]:
    """`{name: digest}` of a manifest entry, plus one key per other file by its member name
    (`name#2` for shard 2, `name#adapter1`, `name#projector`: ModelEntry.named_files), so
    single-file models read as before."""
    return ModelEntry.from_json(name, entry).digests_by_member(name)
