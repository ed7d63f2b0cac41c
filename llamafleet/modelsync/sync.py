"""Carry out a SyncPlan: upload missing content, then write the manifest, last."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from llamafleet.modelsync.digest import format_digest
from llamafleet.modelsync.errors import SourceError, StoreError
from llamafleet.modelsync.hashcache import CachedDigest, FileIdentity, HashCache
from llamafleet.modelsync.plan import (
    Action,
    LocalState,
    PendingHash,
    PlannedModel,
    SyncPlan,
    decide,
    fold_members,
    hash_pending,
    identify_locals,
    members_json,
)
from llamafleet.modelsync.progress import NoProgress, ProgressSink
from llamafleet.modelsync.sources import MemberRole, ModelSource
from llamafleet.modelsync.store import ManifestChangedError, RemoteStore
from llamafleet.modelsync.upload import (
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_PART_SIZE,
    Uploader,
    UploadOutcome,
)

MANIFEST_ATTEMPTS = 5


@dataclass(frozen=True)
class SyncTuning:
    """How uploads run: `part_size` and `memory_budget` in bytes (default 8 MiB, 128 MiB),
    `part_workers` threads sending parts (10), `files_in_parallel` files at once (8).

    `part_size` is the preferred multipart size; a file that would need over 10,000 parts gets
    bigger ones (`part_size_for`).
    """

    part_size: int = DEFAULT_PART_SIZE
    part_workers: int = 10
    # Bytes of parts read but not yet sent, across all files.
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    # Small files are latency-bound (several round trips each): overlap many; memory is bounded
    # by the budget, not by this.
    files_in_parallel: int = 8


@dataclass(frozen=True)
class ModelResult:
    """What a sync did for one model.

    `action` is an Action value; `digest` is `sha256:<hex>` and `size_bytes` in bytes, both None
    when absent; `bytes_uploaded` counts bytes sent for this model (0 when another model with
    the same digest carried the upload); `resumed_parts` counts parts reused from an earlier run.
    """

    name: str
    action: str
    digest: str | None
    size_bytes: int | None
    rehashed: bool
    bytes_uploaded: int
    resumed_parts: int
    # The model's other files: (role, digest, size in bytes), in order (a split model's shards
    # 2..N, adapters, a projector); `digest` is the first file's.
    members: tuple[tuple[MemberRole, str, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        """The result in camelCase JSON, without the name (which keys it in SyncResult's);
        `shards`, `adapters` (each `digest`, `sizeBytes`) and `projector` where the model has
        them."""
        document: dict[str, object] = {
            "action": self.action,
            "digest": self.digest,
            "sizeBytes": self.size_bytes,
            "rehashed": self.rehashed,
            "bytesUploaded": self.bytes_uploaded,
            "resumedParts": self.resumed_parts,
        }
        return document | members_json(
            (role, {"digest": digest, "sizeBytes": size}) for role, digest, size in self.members
        )


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: the store URL, a ModelResult per source in source order, and whether the
    manifest was written."""

    store: str
    models: tuple[ModelResult, ...]
    manifest_written: bool

    @property
    def bytes_uploaded(self) -> int:
        """Bytes sent to the store, over all models."""
        return sum(model.bytes_uploaded for model in self.models)

    def names(self, action: Action) -> list[str]:
        """Names of the models whose action was `action`, in source order."""
        return [model.name for model in self.models if model.action == action.value]

    def to_json(self) -> dict[str, object]:
        """The CLI's JSON: names per action, `rehashed`, totals, and `models` (name -> result)."""
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


def _result(model: PlannedModel, outcomes: dict[str, UploadOutcome]) -> ModelResult:
    """A model of several files counts the bytes sent for every file."""
    local = model.local
    files = (model, *model.members)
    sent = [outcome for unit in files if (outcome := outcomes.get(unit.name)) is not None]
    return ModelResult(
        name=model.name,
        action=model.action.value,
        digest=None if local is None else format_digest(local.cached.digest),
        size_bytes=None if local is None else local.identity.size,
        rehashed=any(unit.local is not None and unit.local.rehashed for unit in files),
        bytes_uploaded=sum(outcome.bytes_sent for outcome in sent),
        resumed_parts=sum(outcome.resumed_parts for outcome in sent),
        members=tuple(
            (
                member.source.role,
                format_digest(member.local.cached.digest),
                member.local.identity.size,
            )
            for member in model.members
            if member.local is not None
        ),
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


Carried = tuple[str, UploadOutcome] | None  # (name of the model whose upload it was, outcome)
PlanModel = Callable[[ModelSource, LocalState], PlannedModel]


class _UploadQueue:
    """Starts one upload per distinct digest as soon as a model is known to need it."""

    def __init__(self, uploader: Uploader, file_pool: Executor, progress: ProgressSink) -> None:
        self._uploader = uploader
        self._file_pool = file_pool
        self._progress = progress
        self._carriers: dict[str, str] = {}  # digest -> the model whose upload carries it
        self._jobs: list[Future[Carried]] = []
        self._lock = threading.Lock()

    def offer(self, model: PlannedModel) -> None:
        """Upload `model`'s file, from its path, if it needs an upload no other model carries."""
        if self._claim(model):
            self._submit(self._upload_file, model)

    def reads_once(self, item: PendingHash) -> bool:
        """Whether `item` fits in one PutObject: then one read gives its digest and the bytes
        to upload, where a bigger file is hashed, then read and hashed again as it is sent."""
        return item.source.known_digest is None and self._uploader.fits_whole(item.identity.size)

    def read_once(self, item: PendingHash, cache: HashCache, plan_model: PlanModel) -> None:
        self._submit(self._read_and_upload, item, cache, plan_model)

    def outcomes(self) -> dict[str, UploadOutcome]:
        """Outcome by the name of the model whose upload carried it; raises the first failure."""
        with self._lock:
            jobs = list(self._jobs)
        return dict(carried for job in jobs if (carried := job.result()) is not None)

    def _claim(self, model: PlannedModel) -> bool:
        if model.action is not Action.UPLOAD or model.local is None:
            return False
        with self._lock:
            if model.local.cached.digest in self._carriers:
                return False
            self._carriers[model.local.cached.digest] = model.name
            return True

    def _submit(self, job: Callable[..., Carried], *args: object) -> None:
        with self._lock:
            priority = len(self._jobs)  # first submitted, first given memory
            self._jobs.append(self._file_pool.submit(job, *args, priority))

    def _upload_file(self, model: PlannedModel, priority: int) -> Carried:
        return model.name, _upload_one(self._uploader, model, self._progress, priority)

    def _read_and_upload(
        self, item: PendingHash, cache: HashCache, plan_model: PlanModel, priority: int
    ) -> Carried:
        source, size = item.source, item.identity.size
        hashing = self._progress.track(f"hashing {source.name}", size)
        whole = self._uploader.read_whole(source.path, size, priority, hashing)
        try:
            cached = CachedDigest(whole.hex_digest, item.gguf)
            local = LocalState(item.identity, cached, rehashed=True)
            cache.store(item.identity, cached)
            model = plan_model(source, local)
            if not self._claim(model):
                return None
            uploading = self._progress.track(f"uploading {source.name}", size)
            return model.name, self._uploader.put_whole(whole, uploading)
        finally:
            self._uploader.release(whole)


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
            for unit in (model, *model.members):
                queue.offer(unit)
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
    hashed, overlapping the hashing pass with the uploads, and that a cold file small enough for
    one PutObject is read once, for its digest and its upload (what the CLI runs)."""
    hash_cache = cache or HashCache()
    sink = progress or NoProgress()
    states, pending = identify_locals(sources, hash_cache, verify_known)
    manifest = store.read_manifest()
    sizes = store.list_objects()
    planned: dict[str, PlannedModel] = {}

    with _upload_queue(store, sink, tuning or SyncTuning()) as queue:

        def plan_model(source: ModelSource, local: LocalState | None) -> PlannedModel:
            model = PlannedModel(source, decide(local, source.name, manifest, sizes), local)
            planned[source.name] = model
            return model

        still_hashing = {item.source.name for item in pending}
        for source in sources:
            if source.name not in still_hashing:
                queue.offer(plan_model(source, states[source.name]))
        hash_first: list[PendingHash] = []
        for item in pending:
            if queue.reads_once(item):
                queue.read_once(item, hash_cache, plan_model)
            else:
                hash_first.append(item)
        hash_pending(
            hash_first,
            hash_cache,
            verify_known,
            sink,
            on_hashed=lambda source, local: queue.offer(plan_model(source, local)),
        )
        outcomes = queue.outcomes()
    units = [planned[source.name] for source in sources]
    plan = SyncPlan(store.location, fold_members(units, manifest, store.location), manifest)
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
        tuple(_result(model, outcomes) for model in plan.models),
        written,
    )


def _write_manifest(plan: SyncPlan, store: RemoteStore) -> bool:
    """Merge the plan's entries into the stored manifest; a concurrent writer's entries are kept.
    Where the store honours conditional writes, its write makes ours fail its condition and we
    merge again into what it wrote; where it does not, each model's entry is first written as
    an object of its own, which readers merge over manifest.json, and manifest.json is then
    rewritten from all of them (a lost rewrite loses no entry).

    Raises:
        StoreError: the manifest changed under each of MANIFEST_ATTEMPTS (5) conditional
            writes.
    """
    if not store.conditional_writes:
        return _write_entries(plan, store)
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


def _write_entries(plan: SyncPlan, store: RemoteStore) -> bool:
    manifest = store.read_manifest()
    before = manifest.to_json()
    for model in plan.models:
        if model.action is not Action.ABSENT:
            entry = model.entry(plan.location)
            if manifest.models.get(model.name) != entry or not manifest.per_model_entries:
                store.write_entry(model.name, entry)
            manifest.models[model.name] = entry
    manifest.per_model_entries = True
    if manifest.to_json() == before:
        return False
    # Rewritten from every entry object, ours and concurrent writers'.
    merged = store.read_manifest_version().manifest
    merged.models.update(store.read_entries())
    merged.per_model_entries = True
    store.write_manifest(merged, replacing=None)
    return True
