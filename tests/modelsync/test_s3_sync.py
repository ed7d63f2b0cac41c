"""Sync against real S3 servers on loopback (moto and rclone's disk-backed one)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from s3_probes import RequestLog
from support.skips import optional_skip
from support.synthetic_gguf import GgufSpec, write_gguf
from test_s3_sync_faults import StreamBody

from llamafleet.modelsync.errors import GgufError, StoreError
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.manifest import ModelEntry
from llamafleet.modelsync.plan import Action, plan_sync
from llamafleet.modelsync.sources import ModelSource, discover_files
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import SyncResult, SyncTuning, run_sync, sync_sources

pytestmark = pytest.mark.s3

SMALL_PARTS = SyncTuning(part_size=5 << 20, part_workers=4, memory_budget=3 * (5 << 20))
UPLOADS = ("PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload")


def sync(folder: Path, store: RemoteStore, cache: HashCache) -> SyncResult:
    plan = plan_sync(discover_files(folder), store, cache)
    return run_sync(plan, store, tuning=SMALL_PARTS)


def stored_bytes(store: RemoteStore, key: str) -> bytes:
    return store.client.get_object(Bucket=store.location.bucket, Key=key)["Body"].read()


def body_bytes(body: object) -> bytes:
    """A request body as bytes: buffers are sent as they are, bytes wrapped in a stream."""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    assert isinstance(body, io.BytesIO)
    return body.getvalue()


def object_keys(store: RemoteStore) -> list[str]:
    listing = store.client.list_objects_v2(Bucket=store.location.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    write_gguf(models / "small.gguf", GgufSpec(tensor_bytes=64 << 10, fill=b"s"))
    # Above four parts: a multipart upload of five parts.
    write_gguf(models / "large.gguf", GgufSpec(tensor_bytes=22 << 20, fill=b"L7"))
    return models


def test_cold_sync_uploads_content_addressed_objects_and_manifest(
    folder: Path, store: RemoteStore, cache: HashCache
) -> None:
    result = sync(folder, store, cache)

    assert sorted(result.names(Action.UPLOAD)) == ["large", "small"]
    assert result.manifest_written
    manifest = store.read_manifest()
    for name in ("large", "small"):
        data = (folder / f"{name}.gguf").read_bytes()
        hex_digest = hashlib.sha256(data).hexdigest()
        entry = manifest.models[name]
        assert entry.digest == f"sha256:{hex_digest}"
        assert entry.key == f"fleet/sha256/{hex_digest}.gguf"
        assert entry.size_bytes == len(data)
        assert entry.gguf["architecture"] == "llama"
        assert entry.source == {"kind": "file", "path": str(folder / f"{name}.gguf")}
        assert stored_bytes(store, entry.key) == data
    assert result.bytes_uploaded == sum(p.stat().st_size for p in folder.iterdir())


def test_noop_resync_reads_no_file_and_uploads_nothing(
    folder: Path,
    store: RemoteStore,
    cache: HashCache,
    request_log: RequestLog,
    count_opens: Callable[[Path], list[str]],
) -> None:
    sync(folder, store, cache)
    request_log.calls.clear()
    opened = count_opens(folder)

    result = sync(folder, store, cache)

    assert opened == []
    assert request_log.count(*UPLOADS) == 0
    assert request_log.calls.count("PutObject") == 0  # not even the manifest
    assert result.names(Action.UNCHANGED) == ["large", "small"]
    assert not result.manifest_written
    assert not any(model.rehashed for model in result.models)


def test_every_upload_request_carries_a_checksum_of_its_bytes(
    folder: Path, store: RemoteStore, cache: HashCache
) -> None:
    sent: list[tuple[str, dict[str, str], bytes]] = []

    def capture(request: AWSPreparedRequest, event_name: str, **_: object) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        sent.append((event_name.rsplit(".", 1)[-1], headers, body_bytes(request.body)))

    store.client.meta.events.register("before-send.s3.UploadPart", capture)
    store.client.meta.events.register("before-send.s3.PutObject", capture)
    sync(folder, store, cache)

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    parts = [(headers, body) for operation, headers, body in sent if operation == "UploadPart"]
    assert len(parts) == 5
    for headers, body in parts:
        assert headers["x-amz-checksum-crc32"] == b64(zlib.crc32(body).to_bytes(4, "big"))
    small = (folder / "small.gguf").read_bytes()
    puts = [
        headers for operation, headers, body in sent if operation == "PutObject" and body == small
    ]
    (put,) = puts
    assert put["x-amz-checksum-sha256"] == b64(hashlib.sha256(small).digest())


@pytest.fixture
def conditional_writes(request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params.get("endpoint") == "rclone":
        optional_skip("rclone serve s3 ignores If-Match/If-None-Match: there the last writer wins")


class RivalSync:
    """Another sync into the same store: it records a model of its own just before each of our
    manifest writes goes out, `times` times (None: every time)."""

    def __init__(self, store_url: str, endpoint: str, times: int | None) -> None:
        self.store = RemoteStore.open(store_url, endpoint)
        self.left = times
        self.names: list[str] = []

    def __call__(self, request: AWSPreparedRequest, **_: object) -> None:
        if not request.url.endswith("/manifest.json") or self.left == 0:
            return
        if self.left is not None:
            self.left -= 1
        current = self.store.read_manifest_version()
        name = f"theirs-{len(self.names)}"
        entry = ModelEntry(f"sha256:{'ab' * 32}", 7, "fleet/sha256/x.gguf", {}, {"kind": "file"})
        current.manifest.models[name] = entry
        self.store.write_manifest(current.manifest, replacing=current)
        self.names.append(name)


@pytest.mark.usefixtures("conditional_writes")
def test_entries_a_concurrent_sync_wrote_meanwhile_are_kept(
    folder: Path, store: RemoteStore, cache: HashCache, store_url: str, endpoint: str
) -> None:
    rival = RivalSync(store_url, endpoint, times=1)
    store.client.meta.events.register("before-send.s3.PutObject", rival)

    result = sync(folder, store, cache)

    assert result.manifest_written
    assert rival.names == ["theirs-0"]
    assert sorted(store.read_manifest().models) == ["large", "small", "theirs-0"]


def test_the_store_kind_is_probed(store: RemoteStore, endpoint: str, moto_endpoint: str) -> None:
    """moto refuses a conditional PUT that fails; rclone serve s3 ignores the condition."""
    assert store.conditional_writes is (endpoint == moto_endpoint)


def test_without_conditional_writes_a_concurrent_syncs_models_are_kept(
    tmp_path: Path, folder: Path, rclone_endpoint: str, cache: HashCache
) -> None:
    """c05's kind: on a store that ignores conditions (rclone serve s3), another sync rewrites
    manifest.json just before ours does and ours overwrites it; its models survive in their
    entry objects, and every reader merges them."""
    store_url = f"s3://models-race-{uuid.uuid4().hex[:12]}/fleet"
    ours = RemoteStore.open(store_url, rclone_endpoint)
    ours.client.create_bucket(Bucket=ours.location.bucket)
    theirs = RemoteStore.open(store_url, rclone_endpoint)
    rival_folder = tmp_path / "rival"
    write_gguf(rival_folder / "theirs.gguf", GgufSpec(tensor_bytes=8 << 10, fill=b"t"))
    fired: list[str] = []

    def rival(request: AWSPreparedRequest, **_: object) -> None:
        if request.url.endswith("/manifest.json") and not fired:
            fired.append(request.url)
            rival_cache = HashCache(tmp_path / "rival-cache")
            try:
                sync(rival_folder, theirs, rival_cache)
            finally:
                rival_cache.close()

    ours.client.meta.events.register("before-send.s3.PutObject", rival)
    assert not ours.conditional_writes

    result = sync(folder, ours, cache)

    assert result.manifest_written and fired
    raw = json.loads(stored_bytes(ours, ours.location.manifest_key))
    assert sorted(raw["models"]) == ["large", "small"]  # the rival's rewrite was lost there
    assert sorted(ours.read_manifest().models) == ["large", "small", "theirs"]  # not here


@pytest.mark.usefixtures("conditional_writes")
def test_manifest_write_gives_up_when_it_always_loses_the_race(
    folder: Path, store: RemoteStore, cache: HashCache, store_url: str, endpoint: str
) -> None:
    rival = RivalSync(store_url, endpoint, times=None)
    store.client.meta.events.register("before-send.s3.PutObject", rival)

    with pytest.raises(StoreError, match="manifest changed under 5 attempts"):
        sync(folder, store, cache)
    assert len(rival.names) == 5


def test_touched_identical_file_is_rehashed_not_uploaded(
    folder: Path, store: RemoteStore, cache: HashCache, request_log: RequestLog
) -> None:
    sync(folder, store, cache)
    request_log.calls.clear()
    large = folder / "large.gguf"
    os.utime(large, ns=(large.stat().st_atime_ns, large.stat().st_mtime_ns + 10**9))

    result = sync(folder, store, cache)

    models = {model.name: model for model in result.models}
    assert models["large"].rehashed and models["large"].action == "unchanged"
    assert not models["small"].rehashed
    assert result.bytes_uploaded == 0
    assert request_log.count(*UPLOADS) == 0


def test_changed_same_size_file_is_uploaded_and_manifest_repointed(
    folder: Path, store: RemoteStore, cache: HashCache
) -> None:
    first = sync(folder, store, cache)
    small = folder / "small.gguf"
    stat = small.stat()
    data = bytearray(small.read_bytes())
    data[-1] ^= 0xFF
    small.write_bytes(bytes(data))
    os.utime(small, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime kept, like a sneaky edit

    result = sync(folder, store, cache)

    assert result.names(Action.UPLOAD) == ["small"]
    new_entry = store.read_manifest().models["small"]
    assert new_entry.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    old_digest = next(m.digest for m in first.models if m.name == "small")
    assert new_entry.digest != old_digest
    assert stored_bytes(store, new_entry.key) == bytes(data)


def test_absent_source_keeps_remote_entry(
    folder: Path, store: RemoteStore, cache: HashCache
) -> None:
    sync(folder, store, cache)
    before = store.read_manifest()
    sources = [*discover_files(folder), ModelSource.from_file(folder / "gone.gguf")]
    (folder / "small.gguf").unlink()
    sources = [s for s in sources if s.name != "gone"] + [sources[-1]]

    plan = plan_sync(sources, store, cache)
    result = run_sync(plan, store)

    actions = {model.name: model.action for model in plan.models}
    assert actions == {"large": Action.UNCHANGED, "small": Action.ABSENT, "gone": Action.ABSENT}
    assert result.names(Action.ABSENT) == ["small", "gone"]
    assert store.read_manifest() == before


def test_same_content_under_two_names_is_uploaded_once(
    tmp_path: Path, store: RemoteStore, cache: HashCache, request_log: RequestLog
) -> None:
    folder = tmp_path / "dupes"
    write_gguf(folder / "a.gguf")
    write_gguf(folder / "b.gguf")

    result = sync(folder, store, cache)

    assert request_log.count_but_layout("PutObject") == 2  # one object, one manifest
    manifest = store.read_manifest()
    assert manifest.models["a"].key == manifest.models["b"].key
    assert result.bytes_uploaded == (folder / "a.gguf").stat().st_size


def test_existing_content_under_new_name_is_recorded_without_upload(
    folder: Path, store: RemoteStore, cache: HashCache, tmp_path: Path
) -> None:
    sync(folder, store, cache)
    other = tmp_path / "other"
    other.mkdir()
    (other / "copy.gguf").write_bytes((folder / "small.gguf").read_bytes())

    result = sync(other, store, cache)

    assert result.names(Action.RECORD) == ["copy"]
    assert result.bytes_uploaded == 0
    assert set(store.read_manifest().models) == {"copy", "large", "small"}


def test_corrupted_gguf_is_rejected_before_anything_remote(
    folder: Path, store: RemoteStore, cache: HashCache, request_log: RequestLog
) -> None:
    good = (folder / "large.gguf").read_bytes()
    (folder / "large.gguf").write_bytes(good[: len(good) // 2])

    with pytest.raises(GgufError, match=r"large\.gguf: truncated GGUF file"):
        sync(folder, store, cache)

    assert request_log.calls == []
    assert object_keys(store) == []


def test_pipelined_sync_uploads_then_resyncs_as_a_noop(
    folder: Path, store: RemoteStore, cache: HashCache, request_log: RequestLog
) -> None:
    (folder / "copy.gguf").write_bytes((folder / "small.gguf").read_bytes())

    first = sync_sources(discover_files(folder), store, cache=cache, tuning=SMALL_PARTS)
    second = sync_sources(discover_files(folder), store, cache=cache, tuning=SMALL_PARTS)

    assert sorted(first.names(Action.UPLOAD)) == ["copy", "large", "small"]
    assert (
        first.bytes_uploaded
        == (folder / "large.gguf").stat().st_size + (folder / "small.gguf").stat().st_size
    )
    # The small object and the manifest, once each.
    assert request_log.count_but_layout("PutObject") == 2
    assert second.names(Action.UNCHANGED) == ["copy", "large", "small"]
    assert set(store.read_manifest().models) == {"copy", "large", "small"}


def test_pipelined_sync_reads_a_small_cold_file_once_for_digest_and_upload(
    folder: Path,
    store: RemoteStore,
    cache: HashCache,
    count_opens: Callable[[Path], list[str]],
) -> None:
    opened = count_opens(folder)

    result = sync_sources(discover_files(folder), store, cache=cache, tuning=SMALL_PARTS)

    small, large = str((folder / "small.gguf").resolve()), str((folder / "large.gguf").resolve())
    # Each file's GGUF header is read first. Then the small one (one PutObject) is read once,
    # hashed and sent from that same buffer; the large one is hashed, then read again as it is
    # sent (its key is its digest).
    assert (opened.count(small), opened.count(large)) == (2, 3)
    assert result.names(Action.UPLOAD) == ["large", "small"]
    entry = store.read_manifest().models["small"]
    assert stored_bytes(store, entry.key) == (folder / "small.gguf").read_bytes()
    assert entry.hex_digest == hashlib.sha256((folder / "small.gguf").read_bytes()).hexdigest()
    opened.clear()
    again = sync_sources(discover_files(folder), store, cache=cache, tuning=SMALL_PARTS)
    assert opened == []  # the digest read once went into the hash cache
    assert again.names(Action.UNCHANGED) == ["large", "small"]


def test_pipelined_sync_rejects_a_bad_file_before_any_request(
    folder: Path, store: RemoteStore, cache: HashCache, request_log: RequestLog
) -> None:
    (folder / "zz-broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")

    with pytest.raises(GgufError, match=r"zz-broken\.gguf: truncated GGUF header"):
        sync_sources(discover_files(folder), store, cache=cache, tuning=SMALL_PARTS)

    assert request_log.calls == []


NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header'
    b" you provided implies functionality that is not implemented</Message></Error>"
)


def test_a_store_answering_501_to_conditions_keeps_per_model_entries(
    folder: Path, store: RemoteStore, cache: HashCache
) -> None:
    """../shared/cases/c05: a store that refuses conditional PUTs (Ceph before conditional
    writes, s3gw) is probed as such; the sync records its models without a condition."""

    def refuse_conditions(request: AWSPreparedRequest, **_: object) -> AWSResponse | None:
        names = {name.lower() for name in request.headers}
        if not names & {"if-match", "if-none-match"}:
            return None
        return AWSResponse(request.url, 501, {}, StreamBody(NOT_IMPLEMENTED))

    store.client.meta.events.register("before-send.s3.PutObject", refuse_conditions)

    first = sync(folder, store, cache)
    again = sync(folder, store, cache)

    assert not store.conditional_writes
    assert first.manifest_written and not again.manifest_written
    raw = json.loads(stored_bytes(store, store.location.manifest_key))
    assert raw["perModelEntries"] is True and sorted(raw["models"]) == ["large", "small"]
    assert sorted(store.read_entries()) == ["large", "small"]
