"""The dynamic provider behind ModelSync: `modelsync` driven by Pulumi's resource lifecycle.

- check: validates the inputs; touches neither disk nor network.
- diff: compares the hash cache (a stat per file, never the file's bytes) with the store's
  manifest and the state's, so `pulumi preview` reads no model bytes. A file whose stat no longer
  matches the cache is reported as a change without being read: `update` hashes it, and uploads
  only if its content really changed.
- create/update: plan, then upload what the store lacks and merge the manifest (modelsync).
- delete: removes nothing. Objects are content-addressed and shared by every stack and model
  that uses the same bytes; the manifest names models other stacks may serve. Expiring them is
  the bucket lifecycle's job, not a `pulumi destroy`.

A source this machine lacks (a CI runner previewing a pull request) is never a deletion and never
a re-upload: diff reports no change for it and update keeps its last manifest entry. The
component warns about it when the program declares it, on the same machine.

Pulumi pickles the provider object into the state: it holds no attributes at all. S3 clients and
the hash cache's database are made inside each method; credentials come from the standard AWS
chain (environment, profile, IRSA) of the process that runs the method, never from inputs.
"""

from __future__ import annotations

from typing import Any, cast

import pulumi
from boto3.session import Session
from botocore.config import Config
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN

from llamafleet.components.model_sources import (
    SyncRequest,
    part_sources,
    plain_failures,
    resolve_sources,
    store_url_failures,
)
from llamafleet.modelsync.digest import format_digest, parse_digest
from llamafleet.modelsync.errors import ModelSyncError, SourceError
from llamafleet.modelsync.hashcache import FileIdentity, HashCache
from llamafleet.modelsync.manifest import ModelEntry
from llamafleet.modelsync.plan import SyncPlan, plan_sync
from llamafleet.modelsync.sources import ModelSource
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import run_sync

Props = dict[str, Any]
INPUT_KEYS = (
    "storeUrl",
    "models",
    "sourceDir",
    "ollamaModels",
    "endpointUrl",
    "region",
    "checksumHeaders",
    "parts",
)
# Another store is another resource: replacing it syncs there and forgets (not deletes) the old.
REPLACE_KEYS = ("storeUrl", "endpointUrl")


def open_store(request: SyncRequest) -> RemoteStore:
    """The request's store, its S3 client set to `request.region` when one is given."""
    store = RemoteStore.open(
        request.store_url, request.endpoint_url, checksum_headers=request.checksum_headers
    )
    if request.region is None:
        return store
    config = store.client.meta.config.merge(Config(region_name=request.region))
    client = Session().client("s3", endpoint_url=request.endpoint_url, config=config)
    return RemoteStore(store.location, client, request.checksum_headers)


def names(props: Props) -> list[str]:
    """The model names in `props["models"]`, sorted ([] when it is not a dict)."""
    models = props.get("models")
    return sorted(cast(dict[str, str], models)) if isinstance(models, dict) else []


def part_counts(props: Props) -> dict[str, tuple[int, bool]]:
    """Per model in `props["parts"]`: how many adapters, and whether it has a projector (where
    the files are differs between machines; what the model is made of does not)."""
    return {
        name: (len(part.adapters), part.projector is not None)
        for name, part in part_sources(props.get("parts")).items()
    }


def previous_manifest(state: Props) -> dict[str, dict[str, object]]:
    """The `manifest` output in `state` ({} when there is none)."""
    manifest = state.get("manifest")
    return cast(dict[str, dict[str, object]], manifest) if isinstance(manifest, dict) else {}


class ModelSyncProvider(ResourceProvider):
    """The provider of the module docstring; it holds no attributes."""

    # Made a secret only if a secret was captured, which the tests prove never happens.
    serialize_as_secret_always = False

    def check(self, _olds: Props, news: Props) -> CheckResult:
        """Validate the inputs, one failure per problem; a `storeUrl` still unknown (a bucket
        not made yet) is not checked."""
        plain = ("models", "sourceDir", "ollamaModels", "endpointUrl", "region")
        failures = plain_failures(*(news.get(key) for key in plain), parts=news.get("parts"))
        if news.get("checksumHeaders") not in (None, True, False):
            failures.append(("checksumHeaders", "must be true or false"))
        if news.get("storeUrl") != UNKNOWN:  # from a bucket not created yet
            failures += store_url_failures(news.get("storeUrl"))
        return CheckResult(news, [CheckFailure(prop, reason) for prop, reason in failures])

    def diff(self, _id: str, olds: Props, news: Props) -> DiffResult:
        """Replace when the store changes; update when an input is unknown, the set of names,
        the region or the checksum headers changed, or `drift` finds a reason (each is logged);
        else no change."""
        if any(news.get(key) == UNKNOWN for key in INPUT_KEYS):
            return DiffResult(changes=True)
        replaces = [key for key in REPLACE_KEYS if olds.get(key) != news.get(key)]
        if replaces:
            return DiffResult(changes=True, replaces=replaces, delete_before_replace=False)
        # Where this machine keeps the files (sourceDir, ollamaModels, the paths) differs from
        # one checkout to the next; only the set of names, the region and the content count.
        if any(olds.get(key) != news.get(key) for key in ("region", "checksumHeaders")):
            return DiffResult(changes=True)
        if names(olds) != names(news) or part_counts(olds) != part_counts(news):
            return DiffResult(changes=True)
        reasons = drift(SyncRequest.from_props(news), previous_manifest(olds))
        for reason in reasons:
            pulumi.log.info(f"model {reason}")
        return DiffResult(changes=bool(reasons))

    def create(self, props: Props) -> CreateResult:
        """Sync to the store (`sync`); the id is the store URL."""
        request = SyncRequest.from_props(props)
        return CreateResult(request.store_url, sync(request, {}))

    def update(self, _id: str, olds: Props, news: Props) -> UpdateResult:
        """Sync again; sources this machine lacks keep their entries of the old manifest."""
        return UpdateResult(sync(SyncRequest.from_props(news), previous_manifest(olds)))

    def read(self, id_: str, props: Props) -> ReadResult:
        """Refresh: the state keeps only the entries whose object the store still holds (an
        in-memory store restarted, an object expired): the next `up` then uploads them again.
        Otherwise the state's manifest is what this stack pinned; the store's may have moved on."""
        request = SyncRequest.from_props(props)
        sizes = open_store(request).list_objects_if_any()
        manifest = previous_manifest(props)
        kept = {name: data for name, data in manifest.items() if _stored(data, sizes)}
        for name in sorted(set(manifest) - set(kept)):
            pulumi.log.warn(f"model {name}: the store no longer holds every file of it")
        return ReadResult(id_, {**props, "manifest": kept})

    def delete(self, _id: str, _props: Props) -> None:
        """Delete nothing (objects are shared and content-addressed); only log that."""
        pulumi.log.info("ModelSync: nothing deleted; models are shared and content-addressed")


def _stored(entry: dict[str, object], sizes: dict[str, int]) -> bool:
    """Whether the store holds every object of a manifest entry of the state (its shards,
    adapters and projector too), each at its size."""
    try:
        files = ModelEntry.from_json("state", entry).files
    except ModelSyncError:
        return False
    return all(sizes.get(parse_digest(file.digest)) == file.size_bytes for file in files)


def drift(request: SyncRequest, previous: dict[str, dict[str, object]]) -> list[str]:
    """Why the store or the state no longer match the local files ([] if they match)."""
    sources = resolve_sources(request.spec)
    reasons: list[str] = []
    known: dict[str, tuple[str, int]] = {}
    cache = HashCache()
    try:
        for source in sources.present:
            local = cached_digest(source, cache)
            if local is None:
                reasons.append(
                    f"{source.name}: {source.path} is new, moved or changed since last hashed"
                )
            else:
                known[source.name] = local
    finally:
        cache.close()
    if not known:
        return reasons
    store = open_store(request)
    sizes = store.list_objects_if_any()
    if not sizes:  # an empty or missing bucket (a store on loopback that restarted)
        return [f"{name}: the store lacks sha256:{digest}" for name, (digest, _) in known.items()]
    remote = store.read_manifest()
    owners = {source.name: source.member_of or source.name for source in sources.present}
    for name, (digest, size) in known.items():
        owner, pinned = owners[name], format_digest(digest)
        stored = remote.models.get(owner)
        if sizes.get(digest) != size:
            reasons.append(f"{name}: the store lacks sha256:{digest}")
        elif stored is None or stored.digests_by_member(owner).get(name) != pinned:
            reasons.append(f"{name}: the store's manifest does not name sha256:{digest} there")
        elif _state_digests(owner, previous.get(owner, {})).get(name) != pinned:
            reasons.append(f"{name}: the stack's manifest does not name sha256:{digest} there")
    return reasons


def _state_digests(name: str, entry: dict[str, object]) -> dict[str, str]:
    """ModelEntry.digests_by_member of a manifest entry of the state ({} when it is not one)."""
    try:
        return ModelEntry.from_json(name, entry).digests_by_member(name)
    except ModelSyncError:
        return {}


def cached_digest(source: ModelSource, cache: HashCache) -> tuple[str, int] | None:
    """(hex digest, size) from the hash cache or the source's own name; None if unknown."""
    identity = FileIdentity.of(source.path)
    cached = cache.lookup(identity)
    digest = cached.digest if cached is not None else source.known_digest
    return None if digest is None else (digest, identity.size)


def sync(request: SyncRequest, previous: dict[str, dict[str, object]]) -> Props:
    """Upload what the store lacks and return the provider's outputs."""
    sources = resolve_sources(request.spec)
    store = open_store(request)
    cache = HashCache()
    try:
        plan = plan_sync(sources.present, store, cache)
    finally:
        cache.close()
    manifest = entries(plan, sources.absent, previous)
    if plan.has_changes:
        run_sync(plan, store)
    return request.to_props() | {"manifest": manifest, "absent": sorted(sources.absent)}


def entries(
    plan: SyncPlan, absent: dict[str, str], previous: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    """The manifest this stack will serve.

    Raises:
        SourceError: before anything is uploaded, for a model that is neither on this machine nor
            known from the state or the store.
    """
    manifest = {model.name: model.entry(plan.location).to_json() for model in plan.models}
    missing: list[str] = []
    for name, reason in sorted(absent.items()):
        remote = plan.remote_manifest.models.get(name)
        if name in previous:
            manifest[name] = previous[name]
        elif remote is not None:
            manifest[name] = remote.to_json()
        else:
            missing.append(f"{name} ({reason}; the store has no entry for it either)")
    if missing:
        raise SourceError("cannot sync " + ", ".join(missing))
    return manifest
