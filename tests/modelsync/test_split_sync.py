"""A split model is one model through sync, the manifest and fetch: every shard stored, one entry
naming them in order, and a fetch that lays them out under the names llama.cpp looks for
(../shared/cases/c01)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from support.reference_gguf import write_reference, write_set
from test_modelsync_cli import run

from llamafleet.modelsync.digest import format_digest, hash_file
from llamafleet.modelsync.errors import GgufError, StoreError
from llamafleet.modelsync.fetch import fetch_model_files
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.plan import Action, plan_sync
from llamafleet.modelsync.sources import ModelSource, discover_files
from llamafleet.modelsync.splits import split_layout, with_split_shards
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import sync_sources
from llamafleet.modelsync.verify import verify_remote

pytestmark = pytest.mark.s3


def _digests(paths: list[Path]) -> list[str]:
    return [hash_file(path) for path in paths]


def test_a_folder_of_shards_is_one_source_named_by_its_prefix(tmp_path: Path) -> None:
    shards = write_set(tmp_path / "m", prefix="big")

    sources = with_split_shards(discover_files(tmp_path / "m"), name_by_prefix=True)

    assert [(s.name, s.path, s.member_of) for s in sources] == [
        ("big", shards[0], None),
        ("big#2", shards[1], "big"),
        ("big#3", shards[2], "big"),
    ]


def test_a_named_first_shard_keeps_its_name_and_brings_its_set(tmp_path: Path) -> None:
    shards = write_set(tmp_path, prefix="big")
    named = ModelSource("chat", shards[0])

    sources = with_split_shards([named], name_by_prefix=True)

    assert [s.name for s in sources] == ["chat", "chat#2", "chat#3"]


def test_a_plain_file_named_like_a_shard_is_a_plain_file(tmp_path: Path) -> None:
    plain = write_reference(tmp_path / "m-00001-of-00002.gguf", "llama")
    assert with_split_shards(discover_files(plain), name_by_prefix=True)[0].name == plain.stem


def test_sync_stores_every_shard_under_one_entry(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    shards = write_set(tmp_path / "m", prefix="big")
    hexes = _digests(shards)
    sources = with_split_shards(discover_files(tmp_path / "m"), name_by_prefix=True)

    result = sync_sources(sources, store, cache=cache)

    assert result.names(Action.UPLOAD) == ["big"]
    assert result.bytes_uploaded == sum(path.stat().st_size for path in shards)
    entry = store.read_manifest().models["big"]
    assert list(entry.digests) == hexes
    assert [shard.size_bytes for shard in entry.shards] == [p.stat().st_size for p in shards[1:]]
    assert set(store.list_objects()) == set(hexes)
    assert list(store.read_manifest().models) == ["big"]  # no entry per shard


def test_a_synced_set_is_unchanged_and_a_changed_shard_is_uploaded(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    shards = write_set(tmp_path / "m", prefix="big")
    sources = with_split_shards(discover_files(tmp_path / "m"), name_by_prefix=True)
    sync_sources(sources, store, cache=cache)

    assert plan_sync(sources, store, cache).by_action(Action.UNCHANGED)[0].name == "big"
    write_set(tmp_path / "m", prefix="big")  # same shards, rewritten: same bytes
    assert not plan_sync(sources, store, cache).has_changes

    write_reference(shards[2], "llama", split=(2, 3, 3), tensors=["blk.2.other"])
    again = sync_sources(sources, store, cache=cache)
    assert again.names(Action.UPLOAD) == ["big"]
    assert again.bytes_uploaded == shards[2].stat().st_size
    assert store.read_manifest().models["big"].digests[2] == hash_file(shards[2])


def _lose_shard_2(shards: list[Path]) -> None:
    shards[1].unlink()


def _lose_shard_1(shards: list[Path]) -> None:
    shards[0].unlink()


@pytest.mark.parametrize(
    "case",
    [
        (_lose_shard_2, "incomplete split model: shard 2 of 3"),
        (_lose_shard_1, "shard 2 of 3 of a split model: .*give that one"),
    ],
    ids=["missing-shard", "later-shards-only"],
)
def test_an_incomplete_set_is_refused_and_nothing_is_written(
    tmp_path: Path,
    endpoint: str,
    bucket: str,
    case: tuple[Callable[[list[Path]], None], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage, message = case
    damage(write_set(tmp_path / "m", prefix="big"))
    argv = ["sync", str(tmp_path / "m"), f"s3://{bucket}/models", "--endpoint-url", endpoint]

    code, out, err = run([*argv, "--cache-dir", str(tmp_path / "hc")], capsys)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert re.search(message, err), err
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=bucket)
    assert not listing.get("Contents")


def test_inspect_pins_every_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = write_set(tmp_path, prefix="big")

    code, out, _ = run(["inspect", "--json", "--digest", str(shards[0])], capsys)

    document = json.loads(out)
    assert code == 0
    assert document["digest"] == format_digest(hash_file(shards[0]))
    assert document["shards"] == [
        {"digest": format_digest(hash_file(p)), "sizeBytes": p.stat().st_size} for p in shards[1:]
    ]


def _synced(tmp_path: Path, store: RemoteStore, cache: HashCache) -> list[Path]:
    shards = write_set(tmp_path / "m", prefix="big")
    sync_sources(
        with_split_shards(discover_files(tmp_path / "m"), name_by_prefix=True), store, cache=cache
    )
    return shards


def test_fetch_lays_the_set_out_under_split_names(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    shards = _synced(tmp_path, store, cache)
    hexes = _digests(shards)

    result = fetch_model_files(store, hexes[0], tmp_path / "cache")

    assert result.path == tmp_path / "cache" / split_layout(hexes[0], 3)
    assert result.status == "downloaded"
    assert result.size_bytes == sum(path.stat().st_size for path in shards)
    for number, shard in enumerate(shards):
        named = tmp_path / "cache" / split_layout(hexes[0], 3, number)
        assert named.is_file() and not named.is_symlink()
        assert named.read_bytes() == shard.read_bytes()
    again = fetch_model_files(store, hexes[0], tmp_path / "cache", hexes[1:])
    assert (again.status, again.bytes_downloaded) == ("present", 0)  # links kept markers valid


def test_fetch_refuses_a_wrong_shard_list_in_one_line(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    hexes = _digests(_synced(tmp_path, store, cache))

    with pytest.raises(GgufError, match=r"shard 1 of 3, but 1 other shard\(s\) given"):
        fetch_model_files(store, hexes[0], tmp_path / "cache", hexes[1:2])
    with pytest.raises(GgufError, match="mixed split model"):
        fetch_model_files(store, hexes[0], tmp_path / "cache2", [hexes[2], hexes[1]])


def test_fetch_without_shards_needs_a_manifest_that_names_them(
    tmp_path: Path, store: RemoteStore
) -> None:
    shards = write_set(tmp_path / "m", prefix="big")
    first = hash_file(shards[0])
    store.client.put_object(
        Bucket=store.location.bucket,
        Key=store.location.object_key(first),
        Body=shards[0].read_bytes(),
    )

    with pytest.raises(StoreError, match="shard 1 of 3 of a split model and the manifest"):
        fetch_model_files(store, first, tmp_path / "cache")


def test_fetch_cli_takes_the_shards_in_order(
    tmp_path: Path,
    endpoint: str,
    store: RemoteStore,
    cache: HashCache,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hexes = _digests(_synced(tmp_path, store, cache))
    argv = ["fetch", "--store", store.location.url, "--endpoint-url", endpoint, "--json"]
    argv += ["--digest", format_digest(hexes[0]), "--cache-dir", str(tmp_path / "cache")]
    argv += [arg for h in hexes[1:] for arg in ("--shard", format_digest(h))]

    code, out, _ = run(argv, capsys)

    assert code == 0
    assert json.loads(out)["path"].endswith("/model-00001-of-00003.gguf")


def test_verify_rehashes_every_shard_and_names_a_tampered_one(
    tmp_path: Path, store: RemoteStore, cache: HashCache
) -> None:
    hexes = _digests(_synced(tmp_path, store, cache))
    key = store.location.object_key(hexes[2])
    size = store.object_size(hexes[2]) or 0
    store.client.put_object(Bucket=store.location.bucket, Key=key, Body=b"x" * size)

    results = verify_remote(store)

    assert [(r.name, r.ok) for r in results] == [("big", True), ("big#2", True), ("big#3", False)]
