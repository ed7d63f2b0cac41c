"""Carry out a SyncPlan: upload missing content, then write the manifest, last."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelsync.digest import format_digest
from modelsync.errors import SourceError, StoreError
from modelsync.hashcache import FileIdentity
from modelsync.plan import Action, PlannedModel, SyncPlan
from modelsync.progress import NoProgress, ProgressSink
from modelsync.store import RemoteStore
from modelsync.upload import DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE, Uploader, UploadOutcome


@dataclass(frozen=True)
class SyncTuning:
    part_size: int = DEFAULT_PART_SIZE
    part_workers: int = 10
    # Bytes of parts read but not yet sent, across all files.
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    # Small files are latency-bound (several round trips each): overlap many; memory is bounded
    # by the budget, not by this.
    files_in_parallel: int = 8


@dataclass(frozen=True)
class ModelResult:
    name: str
    action: str
    digest: str | None
    size_bytes: int | None
    rehashed: bool
    bytes_uploaded: int
    resumed_parts: int

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action,
            "digest": self.digest,
            "sizeBytes": self.size_bytes,
            "rehashed": self.rehashed,
            "bytesUploaded": self.bytes_uploaded,
            "resumedParts": self.resumed_parts,
        }


@dataclass(frozen=True)
class SyncResult:
    store: str
    models: tuple[ModelResult, ...]
    manifest_written: bool

    @property
    def bytes_uploaded(self) -> int:
        return sum(model.bytes_uploaded for model in self.models)

    def names(self, action: Action) -> list[str]:
        return [model.name for model in self.models if model.action == action.value]

    def to_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "uploaded": self.names(Action.UPLOAD),
            "recorded": self.names(Action.RECORD),
            "unchanged": self.names(Action.UNCHANGED),
            "absent": self.names(Action.ABSENT),
            "rehashed": [model.name for model in self.models if model.rehashed],
            "bytesUploaded": self.bytes_uploaded,
            "manifestWritten": self.manifest_written,
            "models": {model.name: model.to_json() for model in self.models},
        }


def _result(model: PlannedModel, outcome: UploadOutcome | None) -> ModelResult:
    local = model.local
    return ModelResult(
        name=model.name,
        action=model.action.value,
        digest=None if local is None else format_digest(local.cached.digest),
        size_bytes=None if local is None else local.identity.size,
        rehashed=local is not None and local.rehashed,
        bytes_uploaded=0 if outcome is None else outcome.bytes_sent,
        resumed_parts=0 if outcome is None else outcome.resumed_parts,
    )


def _upload_one(uploader: Uploader, model: PlannedModel, progress: ProgressSink) -> UploadOutcome:
    local = model.local
    if local is None:
        raise SourceError(f"{model.name}: planned an upload without a local file")
    if FileIdentity.of(model.source.path) != local.identity:
        raise SourceError(f"{model.source.path}: changed since the plan was made; sync again")
    advance = progress.track(f"uploading {model.name}", local.identity.size)
    return uploader.upload(model.source.path, local.cached.digest, local.identity.size, advance)


def run_sync(
    plan: SyncPlan,
    store: RemoteStore,
    progress: ProgressSink | None = None,
    tuning: SyncTuning | None = None,
) -> SyncResult:
    """Upload what the plan says is missing, then merge its entries into the manifest."""
    sink = progress or NoProgress()
    settings = tuning or SyncTuning()
    uploads = plan.by_action(Action.UPLOAD)
    first_by_digest: dict[str, PlannedModel] = {}
    for model in uploads:
        if model.local is not None:
            first_by_digest.setdefault(model.local.cached.digest, model)
    outcomes: dict[str, UploadOutcome] = {}
    with (
        ThreadPoolExecutor(settings.part_workers) as part_pool,
        ThreadPoolExecutor(settings.files_in_parallel) as file_pool,
    ):
        uploader = Uploader(store, part_pool, settings.memory_budget, settings.part_size)
        futures = {
            digest: file_pool.submit(_upload_one, uploader, model, sink)
            for digest, model in first_by_digest.items()
        }
        for digest, future in futures.items():
            outcomes[first_by_digest[digest].name] = future.result()
    if outcomes:
        _check_landed(store, [model for model in uploads if model.name in outcomes])
    written = _write_manifest(plan, store) if plan.has_changes else False
    return SyncResult(
        plan.location.url,
        tuple(_result(model, outcomes.get(model.name)) for model in plan.models),
        written,
    )


def _check_landed(store: RemoteStore, uploaded: list[PlannedModel]) -> None:
    """One LIST confirms every uploaded object has its full size before the manifest names it."""
    sizes = store.list_objects()
    for model in uploaded:
        if model.local is None:
            continue
        digest, size = model.local.cached.digest, model.local.identity.size
        if sizes.get(digest) != size:
            key = store.location.object_key(digest)
            raise StoreError(
                f"s3://{store.location.bucket}/{key}: store holds {sizes.get(digest)} bytes,"
                f" uploaded {size}; manifest not written"
            )


def _write_manifest(plan: SyncPlan, store: RemoteStore) -> bool:
    # Re-read so that entries another sync wrote since our plan are kept.
    manifest = store.read_manifest()
    before = manifest.to_json()
    for model in plan.models:
        if model.action is not Action.ABSENT:
            manifest.models[model.name] = model.entry(plan.location)
    if manifest.to_json() == before:
        return False
    store.write_manifest(manifest)
    return True
