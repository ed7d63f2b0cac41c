"""The real model through the CLI, and files beyond the 5 GB single-PUT limit."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from support.skips import optional_skip
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.cli import main
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.plan import plan_sync
from llamafleet.modelsync.sources import discover_files
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import run_sync
from llamafleet.modelsync.upload import MAX_PARTS, MIN_PART_SIZE, part_size_for

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
FIVE_GB = 5 * 1024**3


@pytest.mark.s3
def test_real_model_sync_then_init_container_fetch(
    gemma_path: Path, moto_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"real-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    folder = tmp_path / "models"
    folder.mkdir()
    os.link(gemma_path, folder / gemma_path.name)
    store_url = f"s3://{bucket}/fleet"

    argv = ["sync", str(folder), store_url, "--endpoint-url", moto_endpoint, "--json"]
    assert main([*argv, "--cache-dir", str(tmp_path / "hc")]) == 0
    synced = json.loads(capsys.readouterr().out)
    name = gemma_path.stem
    assert synced["uploaded"] == [name]
    assert synced["models"][name]["digest"] == f"sha256:{GEMMA_SHA256}"

    fetch = [sys.executable, "-m", "llamafleet.modelsync", "fetch", "--store", store_url]
    fetch += ["--digest", f"sha256:{GEMMA_SHA256}", "--cache-dir", str(tmp_path / "node")]
    fetch += ["--endpoint-url", moto_endpoint]
    completed = subprocess.run(fetch, capture_output=True, text=True, check=False)

    assert completed.returncode == 0, completed.stderr
    fetched = tmp_path / "node" / "sha256" / f"{GEMMA_SHA256}.gguf"
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == GEMMA_SHA256
    manifest = RemoteStore.open(store_url, moto_endpoint).read_manifest()
    gguf = manifest.models[name].gguf
    assert (gguf["architecture"], gguf["blockCount"], gguf["fileType"]) == ("gemma3", 18, "Q4_K_M")


@pytest.mark.parametrize("size", [FIVE_GB + 1, 100 * 1024**3, 4 * 1024**4])
def test_part_layout_stays_within_s3_limits_beyond_5_gb(size: int) -> None:
    part_size = part_size_for(size)

    assert MIN_PART_SIZE <= part_size <= FIVE_GB
    assert -(-size // part_size) <= MAX_PARTS


@pytest.mark.s3
def test_sparse_file_over_5_gb_syncs_in_parts(tmp_path: Path, rclone_endpoint: str) -> None:
    if os.environ.get("MODELSYNC_BIG_TESTS") != "1":
        optional_skip("set MODELSYNC_BIG_TESTS=1 to upload a 5 GiB sparse file (about 2 minutes)")
    if shutil.disk_usage(tmp_path).free < 3 * FIVE_GB:
        optional_skip("needs 15 GiB free for the disk-backed server's copy")
    bucket = f"big-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=rclone_endpoint).create_bucket(Bucket=bucket)
    spec = GgufSpec(tensor_bytes=FIVE_GB + (3 << 20))
    model = write_gguf(tmp_path / "models" / "huge.gguf", spec, sparse=True)
    store = RemoteStore.open(f"s3://{bucket}/fleet", rclone_endpoint)

    plan = plan_sync(discover_files(model.parent), store, HashCache(tmp_path / "hc"))
    result = run_sync(plan, store)

    (outcome,) = result.models
    assert outcome.bytes_uploaded == model.stat().st_size > FIVE_GB
    entry = store.read_manifest().models["huge"]
    assert store.object_size(entry.hex_digest) == model.stat().st_size
