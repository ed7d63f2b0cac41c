"""Fetch by digest into a node-local cache, and verify stored objects."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from s3_probes import RequestLog
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.cli import main
from llamafleet.modelsync.errors import DigestMismatchError, StoreError
from llamafleet.modelsync.fetch import fetch_model
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.verify import verify_local, verify_remote

pytestmark = pytest.mark.s3


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    # Spans several download chunks when the chunk size is patched small.
    return write_gguf(
        tmp_path / "src.gguf", GgufSpec(tensor_bytes=300_000, fill=b"xyz")
    ).read_bytes()


@pytest.fixture
def stored(store: RemoteStore, model_bytes: bytes) -> str:
    hex_digest = hashlib.sha256(model_bytes).hexdigest()
    key = store.location.object_key(hex_digest)
    store.client.put_object(Bucket=store.location.bucket, Key=key, Body=model_bytes)
    return hex_digest


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llamafleet.modelsync.download.DOWNLOAD_CHUNK", 64 << 10)


def test_fetch_writes_verified_file_and_marker(
    store: RemoteStore, stored: str, model_bytes: bytes, tmp_path: Path
) -> None:
    result = fetch_model(store, stored, tmp_path / "cache")

    final = tmp_path / "cache" / "sha256" / f"{stored}.gguf"
    assert result.status == "downloaded"
    assert result.path == final
    assert final.read_bytes() == model_bytes
    marker = json.loads(final.with_name(final.name + ".verified").read_text())
    assert marker["digest"] == f"sha256:{stored}"
    assert marker["size"] == len(model_bytes)
    assert sorted(p.name for p in final.parent.iterdir()) == sorted(
        [final.name, f"{final.name}.verified", f"{final.name}.lock"]
    )


def test_second_fetch_skips_without_download_or_rehash(
    store: RemoteStore,
    stored: str,
    tmp_path: Path,
    request_log: RequestLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetch_model(store, stored, tmp_path / "cache")
    request_log.calls.clear()

    def no_hashing(*_: object) -> str:
        raise AssertionError("a verified copy must not be re-hashed")

    monkeypatch.setattr("llamafleet.modelsync.fetch.hash_file", no_hashing)
    result = fetch_model(store, stored, tmp_path / "cache")

    assert result.status == "present"
    assert request_log.calls == []


def test_touched_copy_is_rehashed_once_then_trusted(
    store: RemoteStore, stored: str, tmp_path: Path, request_log: RequestLog
) -> None:
    final = fetch_model(store, stored, tmp_path / "cache").path
    os.utime(final, ns=(0, 10**9))
    request_log.calls.clear()

    assert fetch_model(store, stored, tmp_path / "cache").status == "reverified"
    assert fetch_model(store, stored, tmp_path / "cache").status == "present"
    assert request_log.calls == []


def test_corrupted_local_copy_is_replaced(
    store: RemoteStore, stored: str, model_bytes: bytes, tmp_path: Path
) -> None:
    final = fetch_model(store, stored, tmp_path / "cache").path
    final.write_bytes(b"garbage" + model_bytes[7:])

    result = fetch_model(store, stored, tmp_path / "cache")

    assert result.status == "downloaded"
    assert final.read_bytes() == model_bytes


def test_corrupted_remote_object_fails_and_leaves_no_file(
    store: RemoteStore, stored: str, model_bytes: bytes, tmp_path: Path
) -> None:
    key = store.location.object_key(stored)
    tampered = model_bytes[:-1] + bytes([model_bytes[-1] ^ 1])
    store.client.put_object(Bucket=store.location.bucket, Key=key, Body=tampered)

    with pytest.raises(DigestMismatchError, match=f"not sha256:{stored}"):
        fetch_model(store, stored, tmp_path / "cache")

    folder = tmp_path / "cache" / "sha256"
    assert [p.name for p in folder.iterdir()] == [f"{stored}.gguf.lock"]


def test_fetch_cli_reports_corruption_in_one_line(
    store: RemoteStore,
    endpoint: str,
    stored: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = store.location.object_key(stored)
    store.client.put_object(Bucket=store.location.bucket, Key=key, Body=b"not the model")
    argv = ["fetch", "--store", store.location.url, "--digest", f"sha256:{stored}"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--endpoint-url", endpoint]

    code = main(argv)

    err = capsys.readouterr().err
    assert code == 5  # digest_mismatch's own status
    assert err.count("\n") == 1 and err.startswith("modelsync: error: digest_mismatch: ")
    assert not (tmp_path / "cache" / "sha256" / f"{stored}.gguf").exists()


def test_fetch_of_unknown_digest_fails_clearly(store: RemoteStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such object"):
        fetch_model(store, "0" * 64, tmp_path / "cache")


def test_leftover_partial_file_from_a_killed_fetch_is_removed(
    store: RemoteStore, stored: str, tmp_path: Path
) -> None:
    folder = tmp_path / "cache" / "sha256"
    folder.mkdir(parents=True)
    leftover = folder / f".{stored}.gguf.4242.partial"
    leftover.write_bytes(b"half")

    fetch_model(store, stored, tmp_path / "cache")

    assert not leftover.exists()


def test_verify_remote_detects_a_tampered_object(
    tmp_path: Path, store: RemoteStore, store_url: str, endpoint: str
) -> None:
    write_gguf(tmp_path / "models" / "one.gguf")
    assert main(["sync", str(tmp_path / "models"), store_url, "--endpoint-url", endpoint,
                 "--cache-dir", str(tmp_path / "hc"), "--json"]) == 0  # fmt: skip
    assert [r.ok for r in verify_remote(store)] == [True]
    entry = store.read_manifest().models["one"]
    tampered = b"X" * entry.size_bytes
    store.client.put_object(Bucket=store.location.bucket, Key=entry.key, Body=tampered)

    (result,) = verify_remote(store)

    assert not result.ok
    assert result.actual == f"sha256:{hashlib.sha256(tampered).hexdigest()}"


def test_verify_local_file(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf")
    digest = f"sha256:{hashlib.sha256(model.read_bytes()).hexdigest()}"

    assert verify_local(model, digest).ok
    assert not verify_local(model, "sha256:" + "a" * 64).ok
