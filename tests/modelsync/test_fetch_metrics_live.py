"""The real `modelsync fetch --metrics-port P --retry-seconds 10`, a process as the pod runs it,
against S3 on loopback (moto): a dead endpoint shows reason="store_unreachable" counting up on
/metrics until the store comes up, then the fetch succeeds and the process exits 0; an object
whose bytes are not its digest shows reason="digest_mismatch", not fetched again before the
wait, until the object is fixed. The names it exports are the ones
llamafleet.monitoring.metrics gives the model fetcher (what LlamafleetModelFetchFailing
queries)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from support.loopback import free_port, serving
from support.promql import exposition_names, samples
from support.skips import optional_skip
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.failures import REASONS
from llamafleet.modelsync.store import StoreLocation
from llamafleet.monitoring import metrics

pytestmark = pytest.mark.s3

REPO = Path(__file__).resolve().parents[2]
RETRY_SECONDS = 10
PREFIX = "fleet"


@dataclass(frozen=True)
class Fetcher:
    """A running `modelsync fetch`, its /metrics URL, and where its output goes."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    stdout: Path
    stderr: Path

    def scrape(self) -> str | None:
        """The /metrics text; None while nothing answers yet."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None

    def wait_for(self, condition: Callable[[dict[str, float]], bool], timeout: float) -> str:
        """The first /metrics text whose failure counts (by reason) meet `condition`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr.read_text()
            text = self.scrape()
            if text is not None and condition(failures(text)):
                return text
            time.sleep(0.2)
        raise AssertionError(f"not met in {timeout} s: {self.scrape()}")

    def finish(self, timeout: float) -> int:
        """The exit status, once the process exits (within `timeout` seconds)."""
        return self.process.wait(timeout)


def failures(text: str) -> dict[str, float]:
    """llamafleet_model_fetch_failures_total by reason."""
    return {
        labels["reason"]: value for labels, value in samples(text, metrics.MODEL_FETCH_FAILURES)
    }


@contextmanager
def fetching(endpoint: str, bucket: str, hex_digest: str, folder: Path) -> Iterator[Fetcher]:
    """Run the fetch of `hex_digest` from s3://`bucket`/fleet at `endpoint` into `folder`/cache
    until the block ends (killed then if it still runs)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "llamafleet.modelsync", "fetch", "--json",
        "--store", f"s3://{bucket}/{PREFIX}", "--digest", f"sha256:{hex_digest}",
        "--cache-dir", str(folder / "cache"), "--endpoint-url", endpoint,
        "--metrics-port", str(port), "--retry-seconds", str(RETRY_SECONDS),
    ]  # fmt: skip
    stdout, stderr = folder / "fetch.out", folder / "fetch.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO)
    try:
        yield Fetcher(process, f"http://127.0.0.1:{port}/metrics", stdout, stderr)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.fixture
def model(tmp_path: Path) -> tuple[bytes, str]:
    """A small valid GGUF (the fetcher reads its header once fetched) and its hex digest."""
    data = write_gguf(tmp_path / "model.gguf", GgufSpec(tensor_bytes=64 << 10)).read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def object_key(bucket: str, hex_digest: str) -> str:
    return StoreLocation(bucket, PREFIX).object_key(hex_digest)


def error_lines(fetcher: Fetcher) -> list[str]:
    return fetcher.stderr.read_text().splitlines()


def next_attempt_seconds(line: str) -> float:
    """The wait an error line announces ("...; next attempt in 3.71 s")."""
    found = re.search(r"; next attempt in ([0-9.]+) s$", line)
    assert found, line
    return float(found.group(1))


def last_attempt_failed(text: str) -> dict[str, float]:
    """llamafleet_model_fetch_last_attempt_failed by reason."""
    return {
        labels["reason"]: value
        for labels, value in samples(text, metrics.MODEL_FETCH_LAST_ATTEMPT_FAILED)
    }


def test_an_unreachable_store_counts_up_until_it_comes_up_then_the_fetch_exits_0(
    model: tuple[bytes, str], tmp_path: Path
) -> None:
    data, hex_digest = model
    port = free_port()  # nothing listens here until the store comes up
    endpoint = f"http://127.0.0.1:{port}"

    with fetching(endpoint, "models", hex_digest, tmp_path) as fetcher:
        fetcher.wait_for(lambda counts: counts["store_unreachable"] == 1, timeout=30)
        text = fetcher.wait_for(lambda counts: counts["store_unreachable"] >= 2, timeout=30)
        # Every reason is exported (from 0), with the gauge: the names the fleet queries.
        assert failures(text) == {
            reason: (failures(text)["store_unreachable"] if reason == "store_unreachable" else 0)
            for reason in REASONS
        }
        assert samples(text, metrics.MODEL_FETCH_IN_PROGRESS) == [({}, 1.0)]
        assert metrics.EXPORTERS["model-fetcher"] - exposition_names(text) == set()
        assert fetcher.process.poll() is None  # still in Init, not crash-looping

        moto = ["moto_server", "-H", "127.0.0.1", "-p", str(port)]
        with serving("moto_server", moto, port):
            client = boto3.client("s3", endpoint_url=endpoint)
            client.create_bucket(Bucket="models")
            client.put_object(Bucket="models", Key=object_key("models", hex_digest), Body=data)
            status = fetcher.finish(timeout=RETRY_SECONDS + 30)

        assert status == 0, fetcher.stderr.read_text()
        result = json.loads(fetcher.stdout.read_text())
        assert (result["status"], result["digest"]) == ("downloaded", f"sha256:{hex_digest}")
        assert Path(result["path"]).read_bytes() == data
        lines = error_lines(fetcher)
        assert len(lines) >= 2
        assert all(line.startswith("modelsync: error: store_unreachable: ") for line in lines)
        # The waits double from 5 s, each with equal jitter (half of it to all of it).
        assert 2.5 <= next_attempt_seconds(lines[0]) <= 5
        assert 5 <= next_attempt_seconds(lines[1]) <= 10


def test_a_wrong_object_counts_as_digest_mismatch_until_it_is_fixed_then_the_fetch_exits_0(
    moto_endpoint: str, model: tuple[bytes, str], tmp_path: Path
) -> None:
    data, hex_digest = model
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=bucket)
    key = object_key(bucket, hex_digest)
    client.put_object(Bucket=bucket, Key=key, Body=data[:-1] + bytes([data[-1] ^ 1]))

    with fetching(moto_endpoint, bucket, hex_digest, tmp_path) as fetcher:
        text = fetcher.wait_for(lambda counts: counts["digest_mismatch"] >= 1, timeout=30)
        assert failures(text) == {r: (1 if r == "digest_mismatch" else 0) for r in REASONS}
        assert last_attempt_failed(text) == {r: float(r == "digest_mismatch") for r in REASONS}
        # Not tried again at once: the next attempt waits 2.5 to 5 s.
        time.sleep(2)
        assert failures(fetcher.scrape() or "")["digest_mismatch"] == 1
        # The next attempt finds the same object (its ETag) and does not download it again.
        fetcher.wait_for(lambda counts: counts["digest_mismatch"] >= 2, timeout=30)

        client.put_object(Bucket=bucket, Key=key, Body=data)
        status = fetcher.finish(timeout=RETRY_SECONDS + 30)

    assert status == 0, fetcher.stderr.read_text()
    result = json.loads(fetcher.stdout.read_text())
    assert Path(result["path"]).read_bytes() == data
    assert result["bytesDownloaded"] == len(data)
    first, again, *_ = error_lines(fetcher)
    assert first.startswith("modelsync: error: digest_mismatch: ")
    assert f"not sha256:{hex_digest}" in first and "nothing kept" in first
    assert 2.5 <= next_attempt_seconds(first) <= 5
    assert again.startswith("modelsync: error: digest_mismatch: ")
    assert "is unchanged since (ETag " in again and "not downloaded again" in again


def _child_of(pid: int, timeout: float = 10) -> int:
    """The one child process of `pid` (unshare's forked command), once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"{pid} started no child in {timeout} s")


def test_a_retrying_fetch_stops_at_sigterm_even_as_pid_1(
    model: tuple[bytes, str], tmp_path: Path
) -> None:
    """In a pod the fetcher is its container's PID 1, which the kernel gives no default action
    for SIGTERM: without a handler a fetch retrying for ever would hold its pod until SIGKILL."""
    probe = subprocess.run(["unshare", "-rpf", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        optional_skip(f"no PID namespace for a PID 1 here: {probe.stderr.decode().strip()}")
    _, hex_digest = model
    argv = [
        "unshare", "-rpf", sys.executable, "-m", "llamafleet.modelsync", "fetch",
        "--store", f"s3://models/{PREFIX}", "--digest", f"sha256:{hex_digest}",
        "--cache-dir", str(tmp_path / "cache"), "--endpoint-url", f"http://127.0.0.1:{free_port()}",
        "--retry-seconds", "300",
    ]  # fmt: skip
    stderr = tmp_path / "fetch.err"
    with stderr.open("wb") as err:
        process = subprocess.Popen(argv, stderr=err, cwd=REPO)
    try:
        fetcher = _child_of(process.pid)
        deadline = time.monotonic() + 60
        while "store_unreachable" not in stderr.read_text():  # it failed once and now waits
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.2)
        os.kill(fetcher, signal.SIGTERM)
        assert process.wait(10) == 143, stderr.read_text()
        assert stderr.read_text().rstrip().endswith("modelsync: terminated")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
