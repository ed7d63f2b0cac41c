"""Carry out a SyncPlan: upload missing content, then write the manifest, last."""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from modelsync.digest import format_digest
from modelsync.errors import SourceError, StoreError
from modelsync.hashcache import FileIdentity, HashCache
from modelsync.plan import (
    Action,
    LocalState,
    PlannedModel,
    SyncPlan,
    decide,
    hash_pending,
    identify_locals,
)
from modelsync.progress import NoProgress, ProgressSink
from modelsync.sources import ModelSource
from modelsync.store import ManifestChangedError, RemoteStore
from modelsync.upload import DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE, Uploader, UploadOutcome

MANIFEST_ATTEMPTS = 5


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


def _upload_one(
    uploader: Uploader, model: PlannedModel, progress: ProgressSink, priority: int
) -> UploadOutcome:
    local = model.local
    if local is None:
        raise SourceError(f"{model.name}: planned an upload without a local file")
    if FileIdentity.of(model.source.path) != local.identity:
        raise SourceError(f"{model.source.path}: changed since the plan was made; sync again")
    advance = progress.track(f"uploading {model.name}", local.identity.size)
    return uploader.upload(
        model.source.path, local.cached.digest, local.identity.size, advance, priority
    )


class _UploadQueue:
    """Starts one upload per distinct digest as soon as a model is known to need it."""

    def __init__(self, uploader: Uploader, file_pool: Executor, progress: ProgressSink) -> None:
        self._uploader = uploader
        self._file_pool = file_pool
        self._progress = progress
        self._by_digest: dict[str, tuple[str, Future[UploadOutcome]]] = {}
        self._lock = threading.Lock()

    def offer(self, model: PlannedModel) -> None:
        if model.action is not Action.UPLOAD or model.local is None:
            return
        with self._lock:
            if model.local.cached.digest not in self._by_digest:
                priority = len(self._by_digest)  # first offered, first finished
                future = self._file_pool.submit(
                    _upload_one, self._uploader, model, self._progress, priority
                )
                self._by_digest[model.local.cached.digest] = (model.name, future)

    def outcomes(self) -> dict[str, UploadOutcome]:
        """Outcome by the name of the model whose upload carried it; raises the first failure."""
        with self._lock:
            started = list(self._by_digest.values())
        return {name: future.result() for name, future in started}


def run_sync(
    plan: SyncPlan,
    store: RemoteStore,
    progress: ProgressSink | None = None,
    tuning: SyncTuning | None = None,
) -> SyncResult:
    """Upload what the plan says is missing, then merge its entries into the manifest."""
    settings = tuning or SyncTuning()
    with _upload_queue(store, progress or NoProgress(), settings) as queue:
        for model in plan.models:
            queue.offer(model)
        outcomes = queue.outcomes()
    return _finish(plan, store, outcomes)


def sync_sources(
    sources: list[ModelSource],
    store: RemoteStore,
    *,
    cache: HashCache | None = None,
    verify_known: bool = False,
    progress: ProgressSink | None = None,
    tuning: SyncTuning | None = None,
) -> SyncResult:
    """`plan_sync` then `run_sync`, except that each cold file's upload starts as soon as it is
    hashed, overlapping the hashing pass with the uploads (what the CLI runs)."""
    hash_cache = cache or HashCache()
    sink = progress or NoProgress()
    states, pending = identify_locals(sources, hash_cache, verify_known)
    manifest = store.read_manifest()
    sizes = store.list_objects()
    planned: dict[str, PlannedModel] = {}

    with _upload_queue(store, sink, tuning or SyncTuning()) as queue:

        def settle(source: ModelSource, local: LocalState | None) -> None:
            model = PlannedModel(source, decide(local, source.name, manifest, sizes), local)
            planned[source.name] = model
            queue.offer(model)

        still_hashing = {item.source.name for item in pending}
        for source in sources:
            if source.name not in still_hashing:
                settle(source, states[source.name])
        hash_pending(pending, hash_cache, verify_known, sink, on_hashed=settle)
        outcomes = queue.outcomes()
    plan = SyncPlan(store.location, tuple(planned[source.name] for source in sources), manifest)
    return _finish(plan, store, outcomes)


@contextmanager
def _upload_queue(
    store: RemoteStore, progress: ProgressSink, settings: SyncTuning
) -> Generator[_UploadQueue]:
    with (
        ThreadPoolExecutor(settings.part_workers) as part_pool,
        ThreadPoolExecutor(settings.files_in_parallel) as file_pool,
    ):
        uploader = Uploader(store, part_pool, settings.memory_budget, settings.part_size)
        yield _UploadQueue(uploader, file_pool, progress)


def _finish(plan: SyncPlan, store: RemoteStore, outcomes: dict[str, UploadOutcome]) -> SyncResult:
    written = _write_manifest(plan, store) if plan.has_changes else False
    return SyncResult(
        plan.location.url,
        tuple(_result(model, outcomes.get(model.name)) for model in plan.models),
        written,
    )


def _write_manifest(plan: SyncPlan, store: RemoteStore) -> bool:
    """Merge the plan's entries into the stored manifest; a concurrent writer's entries are kept
    (its write makes ours fail its condition, and we merge again into what it wrote)."""
    for _ in range(MANIFEST_ATTEMPTS):
        current = store.read_manifest_version()
        manifest = current.manifest
        before = manifest.to_json()
        for model in plan.models:
            if model.action is not Action.ABSENT:
                manifest.models[model.name] = model.entry(plan.location)
        if manifest.to_json() == before:
            return False
        try:
            store.write_manifest(manifest, replacing=current)
        except ManifestChangedError:
            continue
        return True
    raise StoreError(
        f"{store.location.url}: manifest changed under {MANIFEST_ATTEMPTS} attempts to write it"
        " (other syncs writing at once); objects are uploaded, sync again to record them"
    )
