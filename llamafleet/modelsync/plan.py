"""Decide what a sync must do, from the hash cache and the remote manifest.

With a warm cache this reads no model bytes at all: a `stat` per file, one GET of the manifest and
one LIST of the objects. A cold cache entry costs one hashing pass (plus the GGUF header), which
also validates the file before anything remote is touched, and lets content the store already
holds (the same bytes under another name, a touched file) be recorded without an upload.
A source missing locally is reported `absent` and keeps its remote entry: never a deletion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import cast

from llamafleet.modelsync.digest import format_digest, hash_file
from llamafleet.modelsync.errors import DigestMismatchError, SourceError
from llamafleet.modelsync.hashcache import CachedDigest, FileIdentity, HashCache
from llamafleet.modelsync.manifest import FileEntry, Manifest, ModelEntry
from llamafleet.modelsync.progress import NoProgress, ProgressSink
from llamafleet.modelsync.servable import read_servable_header
from llamafleet.modelsync.sources import MemberRole, ModelSource
from llamafleet.modelsync.store import RemoteStore, StoreLocation

HASH_WORKERS = 2


class Action(StrEnum):
    """What a sync does for one model; the values appear in plans, results and CLI output."""

    UNCHANGED = "unchanged"  # the manifest already maps the name to these bytes
    UPLOAD = "upload"  # the store lacks the bytes
    RECORD = "record"  # the store has the bytes; only the manifest entry changes
    ABSENT = "absent"  # no local file: nothing to do, the remote entry stays


@dataclass(frozen=True)
class LocalState:
    """A present local file: its identity, digest and GGUF block.

    `rehashed` is False when the hash cache vouched for the file, True otherwise (hashed in
    this run, or a digest its source vouches for, such as an Ollama blob's name).
    """

    identity: FileIdentity
    cached: CachedDigest
    rehashed: bool


@dataclass(frozen=True)
class PlannedModel:
    """One source and what the sync will do for it; `local` is None when the file is absent.

    A model of several files is its first file's, with its other files in `members` (a split
    model's shards 2..N, LoRA adapters, a vision projector, each planned as a file of its own:
    uploaded when the store lacks it) and an action for the whole model.
    """

    source: ModelSource
    action: Action
    local: LocalState | None  # None when absent
    members: tuple[PlannedModel, ...] = ()

    @property
    def name(self) -> str:
        """The model's manifest name (its source's name)."""
        return self.source.name

    def role_members(self, role: MemberRole) -> tuple[PlannedModel, ...]:
        """The members that are `role` to this model, in order."""
        return tuple(member for member in self.members if member.source.role == role)

    def entry(self, location: StoreLocation) -> ModelEntry:
        """The manifest entry for the local file, keyed under the store at `location`; a model
        or member absent locally raises SourceError (`file_entry`)."""
        first = self.file_entry(location)
        projectors = self.role_members("projector")
        return ModelEntry(
            digest=first.digest,
            size_bytes=first.size_bytes,
            key=first.key,
            gguf=self.local.cached.gguf if self.local is not None else {},
            source=self.source.origin,
            shards=tuple(shard.file_entry(location) for shard in self.role_members("shard")),
            adapters=tuple(
                adapter.file_entry(location) for adapter in self.role_members("adapter")
            ),
            projector=projectors[0].file_entry(location) if projectors else None,
        )

    def file_entry(self, location: StoreLocation) -> FileEntry:
        """This file's object and size, keyed under the store at `location`.

        Raises:
            SourceError: the file is absent locally.
        """
        if self.local is None:
            owner = self.source.member_of
            raise SourceError(
                f"{self.source.path}: {self.source.role} of {owner} vanished"
                if owner is not None
                else f"{self.name}: absent locally, no entry to write"
            )
        digest = self.local.cached.digest
        return FileEntry(
            format_digest(digest), self.local.identity.size, location.object_key(digest)
        )

    def to_json(self) -> dict[str, object]:
        """`action` and `path`, plus `digest`, `sizeBytes` and `rehashed` when the file exists,
        and the model's other files as `shards`, `adapters` (lists) and `projector`, each
        `path`, `digest`, `sizeBytes`, `rehashed`."""
        data: dict[str, object] = {"action": self.action.value, "path": str(self.source.path)}
        if self.local is not None:
            data |= {
                "digest": format_digest(self.local.cached.digest),
                "sizeBytes": self.local.identity.size,
                "rehashed": self.local.rehashed,
            }
        return data | members_json((m.source.role, m.file_json()) for m in self.members)

    def file_json(self) -> dict[str, object]:
        """`to_json` without the action: one member file."""
        return {key: value for key, value in self.to_json().items() if key != "action"}


def members_json(files: Iterable[tuple[MemberRole, dict[str, object]]]) -> dict[str, object]:
    """A model's other files, each (its role, its JSON), as JSON keys: `shards` and `adapters`
    (lists, in order) and `projector` (one), each only where the model has it."""
    document: dict[str, object] = {}
    for role, data in files:
        if role == "projector":
            document["projector"] = data
        else:
            listed = document.setdefault(f"{role}s", [])
            cast(list[object], listed).append(data)
    return document


@dataclass(frozen=True)
class SyncPlan:
    """What a sync will do: a PlannedModel per source, in source order, and the manifest read."""

    location: StoreLocation
    models: tuple[PlannedModel, ...]
    remote_manifest: Manifest

    @property
    def has_changes(self) -> bool:
        """Whether any model needs an upload or a new manifest entry."""
        return any(model.action in (Action.UPLOAD, Action.RECORD) for model in self.models)

    def by_action(self, action: Action) -> list[PlannedModel]:
        """The models planned for `action`, in source order."""
        return [model for model in self.models if model.action is action]

    def to_json(self) -> dict[str, object]:
        """`{"store": URL, "models": {name: PlannedModel.to_json()}}`."""
        return {
            "store": self.location.url,
            "models": {model.name: model.to_json() for model in self.models},
        }


def _identify(path: Path) -> FileIdentity | None:
    try:
        return FileIdentity.of(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SourceError(f"{path}: cannot stat: {err.strerror or err}") from err


@dataclass(frozen=True)
class PendingHash:
    """A present source the cache could not vouch for; its header is already checked."""

    source: ModelSource
    identity: FileIdentity
    gguf: dict[str, object]


def _digest_source(
    pending: PendingHash, verify_known: bool, progress: ProgressSink
) -> CachedDigest:
    source = pending.source
    if source.known_digest is not None and not verify_known:
        return CachedDigest(source.known_digest, pending.gguf)
    advance = progress.track(f"hashing {source.name}", pending.identity.size)
    try:
        digest = hash_file(source.path, advance)
    except OSError as err:
        raise SourceError(f"{source.path}: cannot read: {err.strerror or err}") from err
    if source.known_digest is not None and digest != source.known_digest:
        raise DigestMismatchError(
            f"{source.path}: content hashes to sha256:{digest}, not its name's"
            f" sha256:{source.known_digest}"
        )
    return CachedDigest(digest, pending.gguf)


def identify_locals(
    sources: list[ModelSource], cache: HashCache, verify_known: bool = False
) -> tuple[dict[str, LocalState | None], list[PendingHash]]:
    """Cache hits, and the sources still to hash, whose GGUF headers are checked here (cheap):
    a file llama-server would not load (gguf.read_servable_header raises GgufError) fails before
    any file is hashed or anything remote is touched. A hit is not read again (a file an older
    release hashed was synced, and served, before these checks).

    Raises:
        SourceError: two sources have the same name, or a file cannot be stat'ed (a missing
            file is not an error: it is absent).
    """
    states: dict[str, LocalState | None] = {}
    pending: list[PendingHash] = []
    for source in sources:
        if source.name in states:
            raise SourceError(f"two sources are both named {source.name!r}")
        identity = _identify(source.path)
        cached = None if identity is None or verify_known else cache.lookup(identity)
        states[source.name] = None
        if identity is None:
            continue
        if source.member_of is not None:
            # Checked with its model when it was found (with_split_shards, parts.with_parts).
            if cached is not None:
                states[source.name] = LocalState(identity, cached, rehashed=False)
            else:
                pending.append(PendingHash(source, identity, {}))
        elif cached is not None and cached.gguf:
            states[source.name] = LocalState(identity, cached, rehashed=False)
        else:
            # A hit without a header was hashed as another model's file (a later shard, an
            # adapter, a projector): given as a model now, it is checked as one.
            header = read_servable_header(source.path).to_json()
            if cached is not None:
                hit = CachedDigest(cached.digest, header)
                states[source.name] = LocalState(identity, hit, rehashed=False)
            else:
                pending.append(PendingHash(source, identity, header))
    return states, pending


def hash_pending(
    pending: list[PendingHash],
    cache: HashCache,
    verify_known: bool = False,
    progress: ProgressSink | None = None,
    on_hashed: Callable[[ModelSource, LocalState], None] | None = None,
) -> dict[str, LocalState]:
    """Hash each pending source (in parallel), remembering the digests in the cache. Smallest
    first: the upload of a file waits for its digest, so small files ready early give the
    uploads work while the big ones are still being hashed."""
    sink = progress or NoProgress()
    hashed: dict[str, LocalState] = {}
    smallest_first = sorted(pending, key=lambda item: item.identity.size)
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        futures = {
            pool.submit(_digest_source, item, verify_known, sink): item for item in smallest_first
        }
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            # Of files that finished together, the smallest is handed on first (as_completed
            # would yield them in set order).
            for future in sorted(done, key=lambda f: futures[f].identity.size):
                item = futures[future]
                state = LocalState(item.identity, future.result(), rehashed=True)
                cache.store(item.identity, state.cached)
                hashed[item.source.name] = state
                if on_hashed is not None:
                    on_hashed(item.source, state)
    return hashed


def inspect_locals(
    sources: list[ModelSource],
    cache: HashCache,
    verify_known: bool = False,
    progress: ProgressSink | None = None,
) -> dict[str, LocalState | None]:
    """Digest and header of every present source; hashes only what the cache cannot vouch for."""
    states, pending = identify_locals(sources, cache, verify_known)
    states.update(hash_pending(pending, cache, verify_known, progress))
    return states


def decide(
    local: LocalState | None, name: str, manifest: Manifest, sizes: dict[str, int]
) -> Action:
    """The action for model `name`, from its local state and what the store holds.

    `sizes` maps hex digest -> object size in bytes (`RemoteStore.list_objects`); an object of
    another size than the local file counts as missing.
    """
    if local is None:
        return Action.ABSENT
    digest, size = local.cached.digest, local.identity.size
    if sizes.get(digest) != size:
        return Action.UPLOAD
    entry = manifest.models.get(name)
    if entry is not None and entry.hex_digest == digest and entry.size_bytes == size:
        return Action.UNCHANGED
    return Action.RECORD


def fold_members(
    units: list[PlannedModel], manifest: Manifest, location: StoreLocation
) -> tuple[PlannedModel, ...]:
    """The planned models: each model's other files (sources with `member_of`: shards 2..N,
    adapters, a projector) folded into its first file's PlannedModel, whose action becomes the
    whole model's: an upload when the store lacks any file, unchanged when the manifest names
    the same files in the same places (no more, no fewer), else a record. A member that
    vanished since it was found raises SourceError.
    """
    members: dict[str, list[PlannedModel]] = {}
    for unit in units:
        if unit.source.member_of is not None:
            members.setdefault(unit.source.member_of, []).append(unit)
    folded: list[PlannedModel] = []
    for unit in units:
        found = tuple(members.get(unit.name, ()))
        if unit.source.member_of is not None:
            continue
        if unit.local is not None:
            # Also for a model with no other files now: an entry that still lists some changes.
            whole = replace(unit, members=found)
            folded.append(replace(whole, action=_whole_action(whole, manifest, location)))
        else:
            folded.append(unit)
    return tuple(folded)


def _whole_action(model: PlannedModel, manifest: Manifest, location: StoreLocation) -> Action:
    if any(unit.action is Action.UPLOAD for unit in (model, *model.members)):
        return Action.UPLOAD
    planned, stored = model.entry(location), manifest.models.get(model.name)
    if stored is not None and _placed(model.name, stored) == _placed(model.name, planned):
        return Action.UNCHANGED
    return Action.RECORD


def _placed(name: str, entry: ModelEntry) -> list[tuple[str, str, int]]:
    """(member name, digest, size) of every file of the entry, the first as `name`."""
    first = (name, entry.digest, entry.size_bytes)
    return [first, *((m, f.digest, f.size_bytes) for m, f in entry.named_files(name))]


def plan_sync(
    sources: list[ModelSource],
    store: RemoteStore,
    cache: HashCache | None = None,
    verify_known: bool = False,
    progress: ProgressSink | None = None,
) -> SyncPlan:
    """What `run_sync` would do. Local files are checked before the store is contacted."""
    states = inspect_locals(sources, cache or HashCache(), verify_known, progress)
    manifest = store.read_manifest()
    sizes = store.list_objects()
    planned = [
        PlannedModel(
            source, decide(states[source.name], source.name, manifest, sizes), states[source.name]
        )
        for source in sources
    ]
    return SyncPlan(store.location, fold_members(planned, manifest, store.location), manifest)
