"""Stores that refuse `x-amz-checksum-*` headers (Backblaze B2, ../shared/cases/c06): with the
headers on, one clean error and nothing half-written; with them off (`--no-checksum-headers`,
the store setting `checksumHeaders: false`), sync, fetch and verify work and the SHA-256 content
address still proves the bytes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from support.synthetic_gguf import GgufSpec, write_gguf
from test_modelsync_cli import run
from test_s3_sync_faults import StreamBody, pending_uploads

from llamafleet.modelsync.store import RemoteStore

pytestmark = pytest.mark.s3

PART_MIB = 5
REFUSED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code>'
    b"<Message>Unsupported header 'x-amz-checksum-crc32' received for this API call."
    b"</Message></Error>"
)


class RefusesChecksumHeaders:
    """Answers 400 InvalidArgument, as B2 does, to any request carrying a checksum header, and
    records every header name it saw."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def __call__(self, request: AWSRequest, **_: object) -> AWSResponse | None:
        names = [name.lower() for name in request.headers]
        bad = [n for n in names if n.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))]
        if not bad:
            return None
        self.refused += bad
        return AWSResponse(
            request.url, 400, {"Content-Type": "application/xml"}, StreamBody(REFUSED)
        )


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> RefusesChecksumHeaders:
    """Every store the CLI opens in this test refuses checksum headers."""
    store_refuses = RefusesChecksumHeaders()
    real_open = RemoteStore.open.__func__  # type: ignore[attr-defined]

    def open_refusing(cls: type[RemoteStore], *args: object, **kwargs: object) -> RemoteStore:
        store: RemoteStore = real_open(cls, *args, **kwargs)
        store.client.meta.events.register("before-send.s3", store_refuses)
        return store

    monkeypatch.setattr(RemoteStore, "open", classmethod(open_refusing))
    return store_refuses


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    """A single-PUT file and a multipart one (5 parts of PART_MIB)."""
    folder = tmp_path / "models"
    return {
        "small": write_gguf(folder / "small.gguf", GgufSpec(tensor_bytes=160_000)),
        "big": write_gguf(folder / "big.gguf", GgufSpec(tensor_bytes=5 * PART_MIB << 20)),
    }


@dataclass(frozen=True)
class Target:
    """The store under test: its URL, the server's endpoint, a client-side view of it, and
    what the refusing front of it turned away."""

    url: str
    endpoint: str
    store: RemoteStore
    refusing: RefusesChecksumHeaders

    def sync_argv(self, tmp_path: Path, source: Path) -> list[str]:
        argv = ["sync", str(source), self.url, "--endpoint-url", self.endpoint]
        return [*argv, "--part-size", str(PART_MIB), "--cache-dir", str(tmp_path / "hc")]


@pytest.fixture
def target(
    store_url: str, endpoint: str, store: RemoteStore, refusing: RefusesChecksumHeaders
) -> Target:
    return Target(store_url, endpoint, store, refusing)


@pytest.mark.parametrize("size", ["small", "big"])
def test_with_the_headers_on_the_refusal_is_one_line_and_nothing_is_left(
    tmp_path: Path,
    target: Target,
    models: dict[str, Path],
    size: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(target.sync_argv(tmp_path, models[size]), capsys)

    assert code == 1 and err.count("\n") == 1 and "Unsupported header" in err, err
    assert target.refusing.refused
    listing = target.store.client.list_objects_v2(Bucket=target.store.location.bucket)
    assert not listing.get("Contents")
    assert pending_uploads(target.store) == []


def test_with_the_headers_off_sync_fetch_and_verify_work(
    tmp_path: Path,
    target: Target,
    models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    off = ["--no-checksum-headers"]
    store_url, endpoint = target.url, target.endpoint
    code, _, err = run([*target.sync_argv(tmp_path, models["small"].parent), *off], capsys)
    assert code == 0, err

    entries = target.store.read_manifest().models
    for name, path in models.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert entries[name].digest == f"sha256:{digest}"
        cache = tmp_path / f"fetched-{name}"
        fetch = ["fetch", "--store", store_url, "--digest", f"sha256:{digest}"]
        fetch += ["--cache-dir", str(cache), "--endpoint-url", endpoint, *off]
        code, _, err = run(fetch, capsys)
        assert code == 0, err
        (fetched,) = cache.rglob("*.gguf")
        assert hashlib.sha256(fetched.read_bytes()).hexdigest() == digest
    code, _, err = run(["verify", store_url, "--endpoint-url", endpoint, *off], capsys)
    assert code == 0, err
    assert target.refusing.refused == []
