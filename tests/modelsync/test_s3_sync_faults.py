"""Faults during sync: throttling, 5xx, a killed upload, a file changing under the upload."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.digest import crc32_base64
from llamafleet.modelsync.errors import DigestMismatchError, SourceError, StoreError
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.plan import Action, plan_sync
from llamafleet.modelsync.progress import Advance, NoProgress
from llamafleet.modelsync.sources import discover_files
from llamafleet.modelsync.store import RemoteStore, make_s3_client
from llamafleet.modelsync.sync import SyncTuning, run_sync
from llamafleet.modelsync.upload import Uploader, composite_crc32, full_object_crc32

pytestmark = pytest.mark.s3

PART = 5 << 20
TUNING = SyncTuning(part_size=PART, part_workers=2, memory_budget=2 * PART)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class StreamBody:
    """A raw HTTP body botocore can stream, for injected answers."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: object) -> list[bytes]:
        return [self._data]


class FaultInjector:
    """Answers the first `failures` matching requests with 503 SlowDown, without sending them."""

    def __init__(self, operation: str, failures: int) -> None:
        self.operation = operation
        self.remaining = failures
        self.injected = 0

    def __call__(self, request: object, **_: object) -> AWSResponse | None:
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        self.injected += 1
        url = str(getattr(request, "url", ""))
        return AWSResponse(url, 503, {"Content-Type": "application/xml"}, StreamBody(SLOW_DOWN))

    def attach(self, store: RemoteStore) -> FaultInjector:
        store.client.meta.events.register(f"before-send.s3.{self.operation}", self)
        return self


@pytest.fixture
def big_model(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "models" / "big.gguf", GgufSpec(tensor_bytes=4 * PART, fill=b"b1"))


def object_keys(store: RemoteStore) -> list[str]:
    listing = store.client.list_objects_v2(Bucket=store.location.bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def object_exists(store: RemoteStore, key: str) -> bool:
    listing = store.client.list_objects_v2(Bucket=store.location.bucket, Prefix=key)
    return any(item["Key"] == key for item in listing.get("Contents", []))


def pending_uploads(store: RemoteStore) -> list[dict[str, str]]:
    try:
        listing = store.client.list_multipart_uploads(Bucket=store.location.bucket)
    except store.client.exceptions.NoSuchUpload:
        return []
    return list(listing.get("Uploads", []))


@pytest.mark.parametrize("operation", ["UploadPart", "PutObject", "CompleteMultipartUpload"])
def test_throttled_requests_are_retried_until_the_sync_completes(
    big_model: Path, store: RemoteStore, cache: HashCache, operation: str
) -> None:
    injector = FaultInjector(operation, failures=3).attach(store)

    result = run_sync(
        plan_sync(discover_files(big_model.parent), store, cache), store, tuning=TUNING
    )

    assert injector.injected == 3
    assert result.names(Action.UPLOAD) == ["big"]
    entry = store.read_manifest().models["big"]
    stored = store.client.get_object(Bucket=store.location.bucket, Key=entry.key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == entry.hex_digest


def test_endless_throttling_fails_with_one_line_and_no_final_object(
    big_model: Path,
    store: RemoteStore,
    endpoint: str,
    cache: HashCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("llamafleet.modelsync.retry.time.sleep", lambda _: None)
    # Production's adaptive mode rate-limits itself down to minutes of waiting here.
    client = make_s3_client(endpoint, max_attempts=2, retry_mode="standard")
    store = RemoteStore(store.location, client)
    FaultInjector("UploadPart", failures=10_000).attach(store)
    plan = plan_sync(discover_files(big_model.parent), store, cache)

    with pytest.raises(StoreError, match="SlowDown") as caught:
        run_sync(plan, store, tuning=TUNING)

    assert "\n" not in str(caught.value)
    key = plan.models[0].entry(store.location).key
    assert not object_exists(store, key)
    assert store.read_manifest().models == {}


def test_file_changed_after_planning_is_refused(
    big_model: Path, store: RemoteStore, cache: HashCache
) -> None:
    plan = plan_sync(discover_files(big_model.parent), store, cache)
    with big_model.open("r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        handle.write(b"\xff")

    with pytest.raises(SourceError, match="changed since the plan was made"):
        run_sync(plan, store, tuning=TUNING)

    assert object_keys(store) == []


@pytest.mark.parametrize("size", [PART // 2, 4 * PART], ids=["single-put", "multipart"])
def test_bytes_not_matching_the_digest_abort_the_upload(
    tmp_path: Path, store: RemoteStore, size: int
) -> None:
    model = write_gguf(tmp_path / "m.gguf", GgufSpec(tensor_bytes=size))
    stale_digest = hashlib.sha256(b"what the file held when hashed").hexdigest()

    with ThreadPoolExecutor(2) as pool, pytest.raises(DigestMismatchError, match="changed"):
        Uploader(store, pool, part_size=PART).upload(
            model, stale_digest, model.stat().st_size, lambda _: None
        )

    assert object_keys(store) == []
    assert pending_uploads(store) == []


SLOW_CHILD = """
import sys, time
from llamafleet.modelsync import store
make = store.make_s3_client
def slow_client(*args, **kwargs):
    client = make(*args, **kwargs)
    client.meta.events.register("before-send.s3.UploadPart", lambda **_: time.sleep(0.4))
    return client
store.make_s3_client = slow_client
from llamafleet.modelsync.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_upload_leaves_no_object_and_rerun_resumes(
    tmp_path: Path, store: RemoteStore, store_url: str, endpoint: str, cache: HashCache
) -> None:
    model = write_gguf(tmp_path / "models" / "killed.gguf", GgufSpec(tensor_bytes=8 * PART))
    hex_digest = hashlib.sha256(model.read_bytes()).hexdigest()
    key = store.location.object_key(hex_digest)
    argv = [sys.executable, "-c", SLOW_CHILD, "sync", str(model), store_url]
    argv += ["--endpoint-url", endpoint, "--part-size", "5", "--concurrency", "1", "--json"]
    argv += ["--cache-dir", str(cache.directory)]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        uploaded_parts = _wait_for_parts(store, key, at_least=2, child=child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    assert uploaded_parts >= 2
    assert not object_exists(store, key)
    assert store.read_manifest().models == {}

    result = run_sync(plan_sync(discover_files(model.parent), store, cache), store, tuning=TUNING)

    (outcome,) = result.models
    assert outcome.resumed_parts >= 2
    assert outcome.bytes_uploaded < model.stat().st_size
    stored = store.client.get_object(Bucket=store.location.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == hex_digest
    assert [u for u in pending_uploads(store) if u["Key"] == key] == []


class NetProgress(NoProgress):
    """Sums what each transfer reports, taking back included."""

    def __init__(self) -> None:
        self.net: dict[str, int] = {}
        self._lock = threading.Lock()

    def track(self, description: str, total: int) -> Advance:
        def advance(count: int) -> None:
            with self._lock:
                self.net[description] = self.net.get(description, 0) + count

        return advance


def test_pending_upload_holding_other_bytes_is_aborted_and_the_file_sent_afresh(
    big_model: Path, store: RemoteStore, cache: HashCache
) -> None:
    data = big_model.read_bytes()
    hex_digest = hashlib.sha256(data).hexdigest()
    key = store.location.object_key(hex_digest)
    bucket = store.location.bucket
    upload_id = store.client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32"
    )["UploadId"]
    stale = bytes(PART)  # right size, wrong bytes: as if the file changed during a killed run
    for number, body in ((1, stale), (2, data[PART : 2 * PART])):
        store.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip

    progress = NetProgress()
    plan = plan_sync(discover_files(big_model.parent), store, cache)
    result = run_sync(plan, store, progress=progress, tuning=TUNING)

    assert progress.net == {"uploading big": len(data)}  # what the first try counted, taken back
    (outcome,) = result.models
    assert outcome.resumed_parts == 0
    assert outcome.bytes_uploaded == len(data)
    stored = store.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == hex_digest
    assert pending_uploads(store) == []


class ReportedChecksum:
    """Makes the store report a whole-object checksum, as AWS, MinIO and Ceph RGW do (moto and
    rclone do not): the right one, computed from what was sent (`composite`: AWS's CRC32 of the
    parts' CRC32s; `full`: the whole object's CRC32, given, as RGW and MinIO answer), or a wrong
    one."""

    def __init__(self, name: str, wrong: bool, full: str | None = None) -> None:
        self.name, self.wrong, self.full = name, wrong, full
        self.parts: dict[int, str] = {}

    def note_part(self, params: dict[str, object], **_: object) -> None:
        self.parts[int(str(params["PartNumber"]))] = str(params["ChecksumCRC32"])

    def report(self, parsed: dict[str, object], **_: object) -> None:
        in_order = [self.parts[number] for number in sorted(self.parts)]
        right = composite_crc32(in_order) if self.name == "ChecksumCRC32" else None
        if self.full is not None:
            parsed["ChecksumType"] = "FULL_OBJECT"
            right = self.full
        parsed[self.name] = "AAAAAA==-9" if self.wrong or right is None else right


def whole_file_crc32(path: Path) -> str:
    """The file's CRC32 by zlib, base64 big-endian (x-amz-checksum-crc32's form)."""
    return base64.b64encode(zlib.crc32(path.read_bytes()).to_bytes(4, "big")).decode()


@pytest.mark.parametrize(
    ("form", "wrong"),
    [("composite", False), ("composite", True), ("full-object", False), ("full-object", True)],
)
def test_whole_object_checksum_reported_by_the_store_must_match(
    big_model: Path, store: RemoteStore, cache: HashCache, form: str, wrong: bool
) -> None:
    """../shared/cases/c07: a FULL_OBJECT CRC32 equal to the file's own is right, not
    corruption; a wrong answer of either form removes the object."""
    full = whole_file_crc32(big_model) if form == "full-object" else None
    reported = ReportedChecksum("ChecksumCRC32", wrong, full)
    store.client.meta.events.register("provide-client-params.s3.UploadPart", reported.note_part)
    store.client.meta.events.register("after-call.s3.CompleteMultipartUpload", reported.report)
    key = store.location.object_key(hashlib.sha256(big_model.read_bytes()).hexdigest())
    plan = plan_sync(discover_files(big_model.parent), store, cache)

    if not wrong:
        run_sync(plan, store, tuning=TUNING)
        assert object_exists(store, key)
        assert len(reported.parts) > 1
        return
    with pytest.raises(StoreError, match=r"store computed .*ChecksumCRC32 AAAAAA==-9"):
        run_sync(plan, store, tuning=TUNING)
    assert not object_exists(store, key)
    assert store.read_manifest().models == {}


def test_full_object_crc32_combines_the_parts_like_one_pass() -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    cuts = [0, 100_000, 200_000, len(data)]
    parts = [(crc32_base64(data[a:b]), b - a) for a, b in itertools.pairwise(cuts)]
    assert full_object_crc32(parts) == crc32_base64(data)


def test_single_put_whose_reported_checksum_differs_is_removed(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    small = write_gguf(tmp_path / "models" / "small.gguf", GgufSpec(tensor_bytes=1 << 20))
    reported = ReportedChecksum("ChecksumSHA256", wrong=True)
    store.client.meta.events.register("after-call.s3.PutObject", reported.report)
    key = store.location.object_key(hashlib.sha256(small.read_bytes()).hexdigest())

    with pytest.raises(StoreError, match="store computed ChecksumSHA256"):
        run_sync(plan_sync(discover_files(small.parent), store, cache), store, tuning=TUNING)
    assert not object_exists(store, key)
    assert store.read_manifest().models == {}


def _wait_for_parts(
    store: RemoteStore, key: str, at_least: int, child: subprocess.Popen[bytes]
) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            stderr = child.stderr.read().decode() if child.stderr else ""
            pytest.fail(f"sync finished before it could be killed: {stderr}")
        for upload in pending_uploads(store):
            if upload["Key"] == key:
                parts = store.client.list_parts(
                    Bucket=store.location.bucket, Key=key, UploadId=upload["UploadId"]
                ).get("Parts", [])
                if len(parts) >= at_least:
                    return len(parts)
        time.sleep(0.05)
    pytest.fail("no multipart upload with enough parts appeared")
