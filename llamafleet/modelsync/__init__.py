"""modelsync: content-addressed distribution of GGUF models through S3.

No Pulumi import here: the `ModelSync` dynamic provider wraps this API, and pods' init containers
run the CLI (`modelsync fetch`).

Store layout: `s3://BUCKET/PREFIX/sha256/<hex>.gguf` objects and `PREFIX/manifest.json`
(`{"version": 1, "models": {name: {digest, sizeBytes, key, gguf, source}}}`), written last.

Python API (all raise `llamafleet.modelsync.errors.ModelSyncError` subclasses with one-line
messages):

- `read_header(path) -> GgufHeader`; `GgufHeader.to_json()` is the stack files' `gguf:` block.
- `RemoteStore.open(url: str, endpoint_url: str | None = None) -> RemoteStore`
  (build it inside provider methods: it holds a boto3 client, which does not pickle).
- `discover_files(path: Path) -> list[ModelSource]`; `discover_ollama(models_dir, requested)
  -> OllamaScan` (its `sources`, and the models `skipped` with why); or
  `ModelSource(name, path, origin)` directly.
- `plan_sync(sources: list[ModelSource], store: RemoteStore, cache: HashCache | None = None,
  verify_known: bool = False, progress: ProgressSink | None = None) -> SyncPlan`:
  reads the hash cache, one manifest GET and one object LIST; hashes only files the cache cannot
  vouch for; a missing local file is `Action.ABSENT` (its remote entry is kept, never deleted).
  `SyncPlan.has_changes`, `SyncPlan.to_json()`.
- `run_sync(plan: SyncPlan, store: RemoteStore, progress: ProgressSink | None = None,
  tuning: SyncTuning | None = None) -> SyncResult`: uploads what is missing, then merges the
  plan's entries into the manifest. `SyncResult.to_json()`.
- `sync_sources(sources, store, *, cache=None, verify_known=False, progress=None, tuning=None)
  -> SyncResult`: both in one go, each cold file's upload starting as soon as it is hashed
  (what the CLI runs; every GGUF header is still checked before anything remote is touched).
- `fetch_model(store, hex_digest: str, cache_dir: Path) -> FetchResult`.
- `verify_remote(store, names=None) -> list[VerifyResult]`; `verify_local(path, digest)`.
"""

from llamafleet.modelsync.errors import ModelSyncError
from llamafleet.modelsync.fetch import FetchResult, fetch_model
from llamafleet.modelsync.gguf import GgufHeader, read_header
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.manifest import Manifest, ModelEntry
from llamafleet.modelsync.ollama import discover_ollama
from llamafleet.modelsync.plan import Action, SyncPlan, plan_sync
from llamafleet.modelsync.sources import ModelSource, discover_files
from llamafleet.modelsync.store import RemoteStore, StoreLocation
from llamafleet.modelsync.sync import SyncResult, SyncTuning, run_sync, sync_sources
from llamafleet.modelsync.verify import VerifyResult, verify_local, verify_remote

__all__ = [
    "Action",
    "FetchResult",
    "GgufHeader",
    "HashCache",
    "Manifest",
    "ModelEntry",
    "ModelSource",
    "ModelSyncError",
    "RemoteStore",
    "StoreLocation",
    "SyncPlan",
    "SyncResult",
    "SyncTuning",
    "VerifyResult",
    "discover_files",
    "discover_ollama",
    "fetch_model",
    "plan_sync",
    "read_header",
    "run_sync",
    "sync_sources",
    "verify_local",
    "verify_remote",
]
