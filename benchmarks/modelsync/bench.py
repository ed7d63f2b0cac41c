"""modelsync vs `aws s3 sync` vs `s5cmd sync`, same data, same loopback S3 endpoint.

Run from the repository root:
    .venv/bin/python -m benchmarks.modelsync.bench --big 4x512 --small 20x16

Per tool, in one run: cold upload (MiB/s) in interleaved rounds, no-op resync (s, median of 5),
one touched big file (s, bytes sent), peak RSS of the tool's process. modelsync's no-op resync is
also timed in-process, as the Pulumi provider runs it (no interpreter start-up). Ratios are
against the faster peer.

Client and server share the host's cores, so one cold upload swings with whatever else the
host runs. Each round gives every tool one cold upload, in an order rotated between rounds; the
cold ratio is taken per round (tools of one round ran minutes apart) and its median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3

from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.plan import plan_sync
from llamafleet.modelsync.sources import discover_files
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import run_sync
from tests.support.synthetic_gguf import GgufSpec, write_gguf

MIB = 1 << 20
NOOP_REPEATS = 5  # the median is reported: one start-up of a Python CLI varies a lot
BIN = Path(sys.executable).parent
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass
class ToolResult:
    tool: str
    cold_s: list[float]  # one per round
    noop_s: float
    touched_s: float
    touched_bytes_sent: int
    peak_rss_mib: float


@dataclass
class Timed:
    seconds: float
    peak_rss_mib: float
    stdout: str


def run_timed(argv: list[str]) -> Timed:
    """Wall time and peak RSS of one command (wait4 gives this child's own rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {stderr.strip()[-500:]}")
    return Timed(seconds, usage.ru_maxrss / 1024, stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "moto":
        argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    else:
        key = f"{CREDENTIALS['AWS_ACCESS_KEY_ID']},{CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
        argv = [str(BIN / "rclone"), "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}"]
        argv += ["--auth-key", key, "--config", os.devnull]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.1)
    return process, url


def make_data(folder: Path, big: tuple[int, int], small: tuple[int, int]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for prefix, (count, mib) in (("big", big), ("small", small)):
        for index in range(count):
            path = write_gguf(folder / f"{prefix}-{index:02d}.gguf", GgufSpec(tensor_bytes=64))
            with path.open("ab") as out:
                for _ in range(mib):
                    out.write(os.urandom(MIB))
            total += path.stat().st_size
    return total


def touch(path: Path) -> None:
    later = time.time_ns() + 5 * 10**9
    os.utime(path, ns=(later, later))


def sizes_in(output: str, folder: Path, pattern: str) -> int:
    """Bytes of the local files a peer says it uploaded (it prints one line per file)."""
    names = set(re.findall(pattern, output))
    return sum((folder / name).stat().st_size for name in names)


class Tool:
    name = ""

    def __init__(self, endpoint: str, bucket: str, folder: Path, work: Path) -> None:
        self.endpoint, self.bucket, self.folder, self.work = endpoint, bucket, folder, work

    def forget(self) -> None:
        """Empty the bucket and drop local state, so that the next sync is cold."""
        empty_bucket(self.endpoint, self.bucket)

    def sync(self) -> Timed:
        raise NotImplementedError

    def bytes_sent(self, timed: Timed) -> int:
        raise NotImplementedError


class ModelSyncTool(Tool):
    name = "modelsync"
    cache_name = "hash-cache"

    @property
    def cache_dir(self) -> Path:
        return self.work / self.cache_name

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "llamafleet.modelsync", "sync", str(self.folder)]
        argv += [f"s3://{self.bucket}/m", "--endpoint-url", self.endpoint, "--json"]
        return [*argv, "--cache-dir", str(self.cache_dir)]

    def sync(self) -> Timed:
        return run_timed(self.command())

    def bytes_sent(self, timed: Timed) -> int:
        return int(json.loads(timed.stdout)["bytesUploaded"])

    def forget(self) -> None:
        super().forget()
        shutil.rmtree(self.cache_dir, ignore_errors=True)


class KnownDigestsTool(ModelSyncTool):
    """An empty store, but digests already known: an Ollama store (blobs are named by digest),
    or files this machine hashed before (a second store, an earlier `--dry-run`). The upload
    is then the only pass over the bytes, the SHA-256 computed within it."""

    name = "modelsync, digests known"
    cache_name = "hash-cache-known"

    def forget(self) -> None:
        Tool.forget(self)  # the store only: the hash cache is what this row keeps
        if not self.cache_dir.exists():
            run_timed([*self.command(), "--dry-run"])


class AwsCliTool(Tool):
    name = "aws s3 sync"

    def sync(self) -> Timed:
        argv = [str(BIN / "aws"), "s3", "sync", str(self.folder), f"s3://{self.bucket}/m"]
        return run_timed([*argv, "--endpoint-url", self.endpoint, "--no-progress"])

    def bytes_sent(self, timed: Timed) -> int:
        return sizes_in(timed.stdout, self.folder, r"upload: \S*/([^/\s]+\.gguf) to")


class S5cmdTool(Tool):
    name = "s5cmd sync"

    def sync(self) -> Timed:
        argv = [str(BIN / "s5cmd"), "--endpoint-url", self.endpoint, "sync"]
        return run_timed([*argv, f"{self.folder}/", f"s3://{self.bucket}/m/"])

    def bytes_sent(self, timed: Timed) -> int:
        return sizes_in(timed.stdout, self.folder, r"cp \S*/([^/\s]+\.gguf) s3://")


def cold_upload(tool: Tool) -> Timed:
    tool.forget()
    # Dirty pages (the data just generated, the server's files) are written back first, not
    # during the next tool's timed run.
    os.sync()
    return tool.sync()


def measure(tool: Tool, earlier_colds: list[Timed], touched: Path) -> ToolResult:
    """The last cold upload, then the resyncs that need its result."""
    colds = [*earlier_colds, cold_upload(tool)]
    noops = [tool.sync() for _ in range(NOOP_REPEATS)]
    noop = sorted(noops, key=lambda timed: timed.seconds)[NOOP_REPEATS // 2]
    touch(touched)
    after_touch = tool.sync()
    return ToolResult(
        tool=tool.name,
        cold_s=[cold.seconds for cold in colds],
        noop_s=noop.seconds,
        touched_s=after_touch.seconds,
        touched_bytes_sent=tool.bytes_sent(after_touch),
        peak_rss_mib=max(run.peak_rss_mib for run in [*colds, *noops, after_touch]),
    )


def in_process_noop(endpoint: str, bucket: str, folder: Path, work: Path) -> list[float]:
    """No-op resync as the Pulumi provider runs it: a fresh store and cache each call."""
    timings: list[float] = []
    for _ in range(7):
        started = time.perf_counter()
        store = RemoteStore.open(f"s3://{bucket}/m", endpoint)
        cache = HashCache(work / "hash-cache")
        result = run_sync(plan_sync(discover_files(folder), store, cache), store)
        cache.close()
        timings.append(time.perf_counter() - started)
        assert result.bytes_uploaded == 0 and not result.manifest_written
    return timings


def empty_bucket(endpoint: str, bucket: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def rotated(tools: list[Tool], round_index: int) -> list[Tool]:
    start = round_index % len(tools)
    return tools[start:] + tools[:start]


def parse_shape(text: str) -> tuple[int, int]:
    count, mib = text.lower().split("x")
    return int(count), int(mib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=parse_shape, default=(4, 512), help="COUNTxMiB")
    parser.add_argument("--small", type=parse_shape, default=(20, 16), help="COUNTxMiB")
    parser.add_argument("--server", choices=["moto", "rclone"], default="moto")
    parser.add_argument("--rounds", type=int, default=3, help="cold uploads per tool")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    needed = ("aws", "s5cmd", "moto_server", "rclone")
    missing = [tool for tool in needed if not (BIN / tool).exists()]
    if missing:
        sys.exit(f"missing in {BIN}: {', '.join(missing)}; pip install -r requirements-dev.txt")

    with tempfile.TemporaryDirectory(prefix="modelsync-bench-") as scratch:
        work = Path(scratch)
        folder = work / "data"
        total = make_data(folder, args.big, args.small)
        server, endpoint = start_server(args.server, work / "s3")
        try:
            tools: list[Tool] = []
            kinds = (ModelSyncTool, KnownDigestsTool, AwsCliTool, S5cmdTool)
            for index, tool_class in enumerate(kinds):
                bucket = f"bench-{index}"
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
                tools.append(tool_class(endpoint, bucket, folder, work))
            # One untimed round first: in three runs, the first upload into the fresh server
            # (round one's first tool) was that tool's slowest, 10-23 % under its median.
            for tool in tools:
                cold_upload(tool)
            colds: dict[str, list[Timed]] = {tool.name: [] for tool in tools}
            for round_index in range(args.rounds - 1):
                for tool in rotated(tools, round_index):
                    colds[tool.name].append(cold_upload(tool))
                    tool.forget()
            results: dict[str, ToolResult] = {}
            in_process: list[float] = []
            for tool in rotated(tools, args.rounds - 1):
                results[tool.name] = measure(tool, colds[tool.name], folder / "big-00.gguf")
                if type(tool) is ModelSyncTool:
                    in_process = in_process_noop(endpoint, tool.bucket, folder, work)
                tool.forget()
        finally:
            server.terminate()
            server.wait(10)
            shutil.rmtree(folder, ignore_errors=True)
    report([results[tool.name] for tool in tools], in_process, total, args)


def mib_s(total: int, seconds: float) -> float:
    return total / MIB / seconds


def report(
    results: list[ToolResult], in_process: list[float], total: int, args: argparse.Namespace
) -> None:
    big, small = args.big, args.small
    print(
        f"data: {big[0]}x{big[1]} MiB + {small[0]}x{small[1]} MiB = {total / MIB:.0f} MiB,"
        f" server: {args.server}, cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f},"
        f" rounds: {args.rounds}"
    )
    print("| tool | cold MiB/s (median; each round) | no-op resync s | touched s | touched sent |"
          " peak RSS MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in results:
        rounds = ", ".join(f"{mib_s(total, s):.0f}" for s in r.cold_s)
        median = mib_s(total, statistics.median(r.cold_s))
        print(
            f"| {r.tool} | {median:.0f} ({rounds}) | {r.noop_s:.2f} | {r.touched_s:.2f} |"
            f" {r.touched_bytes_sent / MIB:.0f} MiB | {r.peak_rss_mib:.0f} |"
        )
    warm = statistics.median(in_process[1:])
    print(f"| modelsync in-process | | {warm:.3f} (first call {in_process[0]:.3f}) | | | |")
    mine = [r for r in results if r.tool.startswith("modelsync")]
    peers = [r for r in results if not r.tool.startswith("modelsync")]
    ratios: dict[str, list[float]] = {}
    for r in mine:
        ratios[r.tool] = [
            min(peer.cold_s[index] for peer in peers) / r.cold_s[index]
            for index in range(len(r.cold_s))
        ]
        per_round = ", ".join(f"{ratio:.2f}" for ratio in ratios[r.tool])
        print(f"cold upload, {r.tool}, vs the faster peer of each round:"
              f" median {statistics.median(ratios[r.tool]):.2f}x ({per_round})")  # fmt: skip
    mine_noop = mine[0]
    s5cmd = next(r for r in peers if r.tool.startswith("s5cmd"))
    aws = next(r for r in peers if r.tool.startswith("aws"))
    print(f"no-op command: aws takes {aws.noop_s / mine_noop.noop_s:.2f}x modelsync's time")
    print(f"no-op in-process: {warm / s5cmd.noop_s:.2f}x s5cmd's time")
    if args.json_out:
        document = {
            "results": [asdict(r) for r in results],
            "inProcessNoop": in_process,
            "totalBytes": total,
            "coldRatios": ratios,
        }
        args.json_out.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
