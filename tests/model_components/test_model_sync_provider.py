"""The ModelSync dynamic provider's methods, called directly, against moto_server on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.rpc import UNKNOWN
from support.reference_gguf import write_adapter, write_projector, write_reference, write_set

from llamafleet.components import model_sync_provider
from llamafleet.components.model_sources import OLLAMA_SCHEME, SourceSpec, SyncRequest
from llamafleet.components.model_sync_provider import ModelSyncProvider
from llamafleet.modelsync.errors import GgufError, SourceError, StoreError

from .conftest import ACCESS_KEY, SECRET_KEY, write_gguf

pytestmark = pytest.mark.s3

Props = dict[str, Any]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_gguf(tmp_path / "models" / "alpha.gguf", fill=1.0)
    write_gguf(tmp_path / "models" / "beta.gguf", fill=2.0, elements=2048)
    return tmp_path / "models"


@pytest.fixture
def make_props(remote: Remote, folder: Path) -> Callable[..., Props]:
    def make(models: dict[str, str] | None = None, **overrides: Any) -> Props:
        spec = SourceSpec(
            {"alpha": "alpha.gguf", "beta": "beta.gguf"} if models is None else models,
            source_dir=str(folder),
        )
        request = SyncRequest(f"s3://{remote.bucket}/fleet", spec, remote.endpoint, "us-east-1")
        return request.to_props() | overrides

    return make


def _refuse(_: SyncRequest) -> None:
    raise AssertionError("the provider contacted the store")


@pytest.fixture
def no_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach S3 fails the test."""

    monkeypatch.setattr(model_sync_provider, "open_store", _refuse)


@dataclass(frozen=True)
class Remote:
    """The test's own view of the bucket, through its own client."""

    bucket: str
    endpoint: str

    def objects(self) -> dict[str, str]:
        client = boto3.client("s3", endpoint_url=self.endpoint)
        listing = client.list_objects_v2(Bucket=self.bucket)
        return {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}

    def read(self, key: str) -> bytes:
        client = boto3.client("s3", endpoint_url=self.endpoint)
        return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture
def remote(bucket: str, moto_endpoint: str) -> Remote:
    return Remote(bucket, moto_endpoint)


def test_create_uploads_and_returns_the_manifest(
    make_props: Callable[..., Props],
    folder: Path,
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    result = provider.create(make_props())

    assert result.id == f"s3://{remote.bucket}/fleet"
    outs = result.outs or {}
    assert sorted(outs["manifest"]) == ["alpha", "beta"]
    assert outs["absent"] == []
    for name in ("alpha", "beta"):
        path = folder / f"{name}.gguf"
        entry = outs["manifest"][name]
        assert entry["digest"] == f"sha256:{sha256(path)}"
        assert entry["sizeBytes"] == path.stat().st_size
        assert entry["key"] == f"fleet/sha256/{sha256(path)}.gguf"
        assert entry["gguf"]["architecture"] == "llama"
        assert entry["gguf"]["blockCount"] == 4
        assert remote.read(entry["key"]) == path.read_bytes()
    written = json.loads(remote.read("fleet/manifest.json"))
    assert {n: e["digest"] for n, e in written["models"].items()} == {
        n: e["digest"] for n, e in outs["manifest"].items()
    }


def test_unchanged_files_diff_to_no_change_without_reading_them(
    make_props: Callable[..., Props],
    folder: Path,
    watch_opens: Callable[[Path], list[str]],
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    opened = watch_opens(folder)

    diff = provider.diff("id", state, make_props())

    assert diff.changes is False
    assert not diff.replaces
    assert opened == []


def test_changed_file_diffs_to_update_unread_and_update_uploads_it(
    make_props: Callable[..., Props],
    folder: Path,
    remote: Remote,
    watch_opens: Callable[[Path], list[str]],
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    write_gguf(folder / "beta.gguf", fill=3.0, elements=2048)  # same size, new bytes
    opened = watch_opens(folder)

    diff = provider.diff("id", state, make_props())

    assert diff.changes is True
    assert not diff.replaces
    assert opened == []  # the stat alone says the cache no longer vouches for the file
    outs = provider.update("id", state, make_props()).outs or {}
    new_digest = sha256(folder / "beta.gguf")
    assert outs["manifest"]["beta"]["digest"] == f"sha256:{new_digest}"
    assert outs["manifest"]["alpha"] == state["manifest"]["alpha"]
    key = f"fleet/sha256/{new_digest}.gguf"
    assert remote.read(key) == (folder / "beta.gguf").read_bytes()
    assert provider.diff("id", outs, make_props()).changes is False


def test_refresh_forgets_what_the_store_lost_and_the_next_update_uploads_it(
    make_props: Callable[..., Props],
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    assert provider.read("id", state).outs == state  # nothing lost: the state stands
    client = boto3.client("s3", endpoint_url=remote.endpoint)
    client.delete_object(Bucket=remote.bucket, Key=state["manifest"]["beta"]["key"])

    refreshed = provider.read("id", state).outs or {}

    assert sorted(refreshed["manifest"]) == ["alpha"]
    assert provider.diff("id", refreshed, make_props()).changes is True
    outs = provider.update("id", refreshed, make_props()).outs or {}
    assert outs["manifest"] == state["manifest"]
    assert remote.read(state["manifest"]["beta"]["key"])


def test_refresh_of_a_bucket_that_is_gone_keeps_no_entry(
    make_props: Callable[..., Props],
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    bucket = boto3.resource("s3", endpoint_url=remote.endpoint).Bucket(remote.bucket)
    bucket.objects.all().delete()
    bucket.delete()  # an in-memory store that restarted

    refreshed = provider.read("id", state).outs or {}

    assert refreshed["manifest"] == {}
    assert provider.diff("id", refreshed, make_props()).changes is True


def test_touched_identical_file_is_rehashed_by_update_but_not_uploaded(
    make_props: Callable[..., Props],
    folder: Path,
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    before = remote.objects()
    (folder / "alpha.gguf").touch()
    os.utime(folder / "alpha.gguf", ns=(1, 1))

    assert provider.diff("id", state, make_props()).changes is True
    outs = provider.update("id", state, make_props()).outs or {}

    assert outs["manifest"] == state["manifest"]
    assert remote.objects() == before  # not even the manifest rewritten


def test_absent_source_plans_no_change_contacts_no_store_and_keeps_the_manifest(
    make_props: Callable[..., Props],
    folder: Path,
    remote: Remote,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = ModelSyncProvider()
    state = provider.create(make_props()).outs or {}
    before = remote.objects()
    folder.rename(folder.with_name("elsewhere"))  # a CI runner: the models are not here

    with monkeypatch.context() as patch:
        patch.setattr(model_sync_provider, "open_store", _refuse)
        diff = provider.diff("id", state, make_props())
    assert diff.changes is False
    assert not diff.replaces
    assert diff.delete_before_replace is not True

    outs = provider.update("id", state, make_props()).outs or {}
    assert outs["manifest"] == state["manifest"]
    assert outs["absent"] == ["alpha", "beta"]
    assert remote.objects() == before


def test_absent_source_keeps_the_stacks_pinned_digest_when_the_store_moved_on(
    make_props: Callable[..., Props], folder: Path
) -> None:
    provider = ModelSyncProvider()
    pinned = provider.create(make_props()).outs or {}
    write_gguf(folder / "beta.gguf", fill=9.0, elements=2048)
    moved = provider.create(make_props()).outs or {}  # another stack syncs a new beta
    assert moved["manifest"]["beta"] != pinned["manifest"]["beta"]
    folder.rename(folder.with_name("elsewhere"))

    outs = provider.update("id", pinned, make_props()).outs or {}

    assert outs["manifest"] == pinned["manifest"]


def test_absent_model_the_store_knows_is_adopted_from_its_manifest(
    make_props: Callable[..., Props], folder: Path
) -> None:
    provider = ModelSyncProvider()
    synced = provider.create(make_props()).outs or {}
    (folder / "beta.gguf").unlink()

    outs = provider.create(make_props()).outs or {}  # a second stack, on a runner without beta

    assert outs["manifest"]["beta"] == synced["manifest"]["beta"]
    assert outs["absent"] == ["beta"]


def test_absent_model_unknown_everywhere_fails_before_any_upload(
    make_props: Callable[..., Props],
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    props = make_props({"alpha": "alpha.gguf", "gamma": "gamma.gguf"})

    with pytest.raises(SourceError, match=r"cannot sync gamma \(.*gamma.gguf: no such file"):
        provider.create(props)

    assert remote.objects() == {}


def test_corrupted_gguf_fails_before_any_upload(
    make_props: Callable[..., Props],
    folder: Path,
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    (folder / "beta.gguf").write_bytes(b"GGML" + bytes(4096))

    with pytest.raises(GgufError, match="not a GGUF file"):
        provider.create(make_props())

    assert remote.objects() == {}


def test_missing_bucket_is_one_clear_store_error(make_props: Callable[..., Props]) -> None:
    provider = ModelSyncProvider()
    props = make_props(storeUrl="s3://no-such-bucket-here/fleet")
    with pytest.raises(StoreError, match=r"no-such-bucket-here.*NoSuchBucket"):
        provider.create(props)


def test_ollama_model_is_synced_under_its_settings_name_without_rehashing(
    make_props: Callable[..., Props],
    tmp_path: Path,
    watch_opens: Callable[[Path], list[str]],
) -> None:
    provider = ModelSyncProvider()
    store = tmp_path / "ollama"
    blob = write_gguf(tmp_path / "tmp.gguf", fill=7.0)
    digest = sha256(blob)
    (store / "blobs").mkdir(parents=True)
    blob.rename(store / "blobs" / f"sha256-{digest}")
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    layer = {
        "mediaType": "application/vnd.ollama.image.model",
        "digest": f"sha256:{digest}",
        "size": (store / "blobs" / f"sha256-{digest}").stat().st_size,
    }
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}))
    props = make_props({"tiny-chat": f"{OLLAMA_SCHEME}tiny"}, ollamaModels=str(store))

    state = provider.create(props).outs or {}
    opened = watch_opens(store / "blobs")

    assert state["manifest"]["tiny-chat"]["digest"] == f"sha256:{digest}"
    assert state["manifest"]["tiny-chat"]["source"]["kind"] == "ollama"
    assert provider.diff("id", state, props).changes is False
    assert opened == []


def test_store_change_replaces_and_other_input_changes_update(
    make_props: Callable[..., Props], no_store: None
) -> None:
    provider = ModelSyncProvider()
    state = make_props() | {"manifest": {}, "absent": []}

    moved = provider.diff("id", state, make_props(storeUrl="s3://another-bucket/fleet"))
    assert moved.changes is True
    assert moved.replaces == ["storeUrl"]
    assert moved.delete_before_replace is False
    fewer = provider.diff("id", state, make_props({"alpha": "alpha.gguf"}))
    assert fewer.changes is True
    assert not fewer.replaces
    assert provider.diff("id", state, make_props(region="eu-west-1")).changes is True
    assert provider.diff("id", state, make_props(checksumHeaders=False)).changes is True
    assert provider.diff("id", state, make_props(storeUrl=UNKNOWN)).changes is True


def test_checksum_headers_are_recorded_only_when_off(make_props: Callable[..., Props]) -> None:
    """A stack keeping the default records the same inputs as before the setting existed."""
    assert "checksumHeaders" not in make_props()
    off = SyncRequest.from_props(make_props(checksumHeaders=False))
    assert off.checksum_headers is False
    assert off.to_props()["checksumHeaders"] is False
    assert SyncRequest.from_props(make_props()).checksum_headers is True


def test_another_checkout_path_without_the_files_is_no_change(
    make_props: Callable[..., Props], no_store: None
) -> None:
    state = make_props() | {"manifest": {}, "absent": []}
    runner = make_props(sourceDir="/home/runner/work/llamafleet/models")

    diff = ModelSyncProvider().diff("id", state, runner)

    assert diff.changes is False
    assert not diff.replaces


def test_delete_removes_nothing_remote(
    make_props: Callable[..., Props],
    remote: Remote,
) -> None:
    provider = ModelSyncProvider()
    result = provider.create(make_props())
    before = remote.objects()

    provider.delete(result.id, result.outs or {})

    assert remote.objects() == before


def test_check_accepts_good_inputs_and_an_unknown_store_url(
    make_props: Callable[..., Props],
) -> None:
    provider = ModelSyncProvider()
    assert provider.check({}, make_props()).failures == []
    assert provider.check({}, make_props(storeUrl=UNKNOWN)).failures == []


@pytest.mark.parametrize(
    ("overrides", "prop", "reason"),
    [
        ({"storeUrl": "https://bucket/x"}, "storeUrl", "expected s3://BUCKET"),
        ({"models": {}}, "models", "at least one model"),
        ({"models": {"a": "a.gguf"}, "sourceDir": None}, "models.a", "relative: set sourceDir"),
        ({"models": {"a": "ollama://"}}, "models.a", "names no Ollama model"),
        ({"models": {"a": "pypi://gemma3"}}, "models.a", "only paths (/…, ~/…) and ollama://"),
        ({"models": {"bad name": "/m.gguf"}}, "models", "not a model name"),
        ({"sourceDir": "models"}, "sourceDir", "absolute path"),
        ({"endpointUrl": "http://AKIA:secret@127.0.0.1:9000"}, "endpointUrl", "credentials"),
        ({"endpointUrl": "s3.lab:9000"}, "endpointUrl", "http(s)://HOST"),
        ({"region": "moon-1"}, "region", "not an AWS region"),
        ({"checksumHeaders": "no"}, "checksumHeaders", "must be true or false"),
    ],
)
def test_check_reports_each_bad_input(
    make_props: Callable[..., Props],
    overrides: Props,
    prop: str,
    reason: str,
) -> None:
    provider = ModelSyncProvider()
    failures = provider.check({}, make_props(**overrides)).failures
    assert [(f.property, reason in f.reason) for f in failures] == [(prop, True)]


def test_provider_pickles_without_clients_or_credentials(make_props: Callable[..., Props]) -> None:
    provider = ModelSyncProvider()
    outs = provider.create(make_props()).outs or {}  # used: nothing may stick to it

    assert vars(provider) == {}
    copy = pickle.loads(pickle.dumps(provider))  # noqa: S301 (bytes this test made)
    assert isinstance(copy, ModelSyncProvider)
    serialized = base64.b64decode(serialize_provider(provider))
    for credential in (ACCESS_KEY, SECRET_KEY):
        assert credential.encode() not in serialized
        assert credential not in json.dumps(outs)


def test_a_split_model_syncs_whole_and_a_lost_shard_is_drift(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    """../shared/cases/c01: the settings name shard 1; the provider syncs the set, its state
    entry names every shard, and a shard the store lost is found by diff and by refresh."""
    shards = write_set(folder / "split", prefix="big")
    props = make_props({"big": str(shards[0])})
    provider = ModelSyncProvider()

    state = provider.create(props).outs or {}

    entry = state["manifest"]["big"]
    assert entry["digest"] == f"sha256:{sha256(shards[0])}"
    assert [shard["digest"] for shard in entry["shards"]] == [
        f"sha256:{sha256(path)}" for path in shards[1:]
    ]
    assert all(
        remote.read(shard["key"]) == path.read_bytes()
        for shard, path in zip(entry["shards"], shards[1:], strict=True)
    )
    assert provider.diff("id", state, props).changes is False
    _lose_and_recover(provider, state, props, remote, entry["shards"][1]["key"])
    assert remote.read(entry["shards"][1]["key"]) == shards[2].read_bytes()


def _lose_and_recover(
    provider: ModelSyncProvider, state: Props, props: Props, remote: Remote, key: str
) -> None:
    """The store loses object `key`: diff finds it, refresh forgets the model, update restores
    the state as it was."""
    boto3.client("s3", endpoint_url=remote.endpoint).delete_object(Bucket=remote.bucket, Key=key)
    assert provider.diff("id", state, props).changes is True
    assert (provider.read("id", state).outs or {})["manifest"] == {}
    assert provider.update("id", state, props).outs == state


def test_an_incomplete_split_model_fails_before_any_upload(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    shards = write_set(folder / "split", prefix="big")
    shards[2].unlink()

    with pytest.raises(GgufError, match="incomplete split model: shard 3 of 3"):
        ModelSyncProvider().create(make_props({"big": str(shards[0])}))
    assert remote.objects() == {}


def test_adapters_and_projector_sync_with_their_model_and_a_lost_one_is_drift(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    model = write_reference(folder / "chat.gguf", "llama")
    adapter = write_adapter(folder / "tone.gguf", "llama")
    projector = write_projector(folder / "mmproj.gguf")
    parts = {"chat": {"adapters": ["tone.gguf"], "projector": str(projector)}}
    props = make_props({"chat": "chat.gguf"}, parts=parts)
    provider = ModelSyncProvider()
    assert provider.check({}, props).failures == []

    state = provider.create(props).outs or {}

    entry = state["manifest"]["chat"]
    assert entry["digest"] == f"sha256:{sha256(model)}"
    assert [a["digest"] for a in entry["adapters"]] == [f"sha256:{sha256(adapter)}"]
    assert entry["projector"]["digest"] == f"sha256:{sha256(projector)}"
    assert remote.read(entry["projector"]["key"]) == projector.read_bytes()
    assert provider.diff("id", state, props).changes is False
    without_projector = make_props(
        {"chat": "chat.gguf"}, parts={"chat": {"adapters": ["tone.gguf"]}}
    )
    assert provider.diff("id", state, without_projector).changes is True
    _lose_and_recover(provider, state, props, remote, entry["adapters"][0]["key"])


def test_adapters_in_another_order_are_a_change(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    write_reference(folder / "chat.gguf", "llama")
    write_adapter(folder / "a.gguf", "llama")
    write_adapter(folder / "b.gguf", "llama", {"blk.1.attn_q.weight.lora_a": (4, 32)})
    props = make_props({"chat": "chat.gguf"}, parts={"chat": {"adapters": ["a.gguf", "b.gguf"]}})
    provider = ModelSyncProvider()
    state = provider.create(props).outs or {}
    swapped = make_props({"chat": "chat.gguf"}, parts={"chat": {"adapters": ["b.gguf", "a.gguf"]}})

    assert provider.diff("id", state, props).changes is False
    assert provider.diff("id", state, swapped).changes is True
    updated = provider.update("id", state, swapped).outs or {}
    before = [a["digest"] for a in state["manifest"]["chat"]["adapters"]]
    assert [a["digest"] for a in updated["manifest"]["chat"]["adapters"]] == before[::-1]


def test_a_missing_part_keeps_the_models_last_entry(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    write_reference(folder / "chat.gguf", "llama")
    adapter = write_adapter(folder / "tone.gguf", "llama")
    props = make_props({"chat": "chat.gguf"}, parts={"chat": {"adapters": ["tone.gguf"]}})
    provider = ModelSyncProvider()
    state = provider.create(props).outs or {}
    adapter.unlink()

    assert provider.diff("id", state, props).changes is False
    assert (provider.update("id", state, props).outs or {})["manifest"] == state["manifest"]


def test_an_adapter_for_another_architecture_fails_before_any_upload(
    make_props: Callable[..., Props], folder: Path, remote: Remote
) -> None:
    write_reference(folder / "chat.gguf", "llama")
    write_adapter(folder / "tone.gguf", "gemma3")
    props = make_props({"chat": "chat.gguf"}, parts={"chat": {"adapters": ["tone.gguf"]}})

    with pytest.raises(GgufError, match="an adapter for 'gemma3', the model is 'llama'"):
        ModelSyncProvider().create(props)
    assert remote.objects() == {}


@pytest.mark.parametrize(
    ("parts", "prop", "reason"),
    [
        ({"other": {"adapters": ["a.gguf"]}}, "parts", "not a model with adapters"),
        ({"alpha": {"adapters": "a.gguf"}}, "parts", "not a model with adapters"),
        ({"alpha": {"adapters": ["ollama://x"]}}, "parts.alpha", "from files, not ollama://"),
        ({"alpha": {"projector": "pypi://x"}}, "parts.alpha", "only paths"),
    ],
)
def test_check_reports_each_bad_part(
    make_props: Callable[..., Props], parts: Props, prop: str, reason: str
) -> None:
    failures = ModelSyncProvider().check({}, make_props(parts=parts)).failures
    assert [(f.property, reason in f.reason) for f in failures] == [(prop, True)]
