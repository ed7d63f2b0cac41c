"""What the gateway adds: the real gateway (LiteLLM's proxy from gateway/requirements.lock, the
llamafleet_gateway plugin, the config the Gateway component renders) in front of a backend that
answers at once (stub_backend.py), against calling that backend directly, side by side in one
run. Added time to first token at 1, 8 and 32 clients (streamed chat completions), requests per
second through one gateway process (32 clients, not streamed) and the gateway's RSS.

    .venv/bin/python benchmarks/gateway/bench.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from llamafleet.components.gateway import gateway_argv, gateway_environment  # noqa: E402
from llamafleet.components.gateway_config import (  # noqa: E402
    Backend,
    gateway_command,
    internal_key_env,
    litellm_config,
    routes,
)
from llamafleet_gateway.keys import key_hash  # noqa: E402

TEAM_KEY = f"bench-{secrets.token_hex(16)}"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, deadline_s: float = 240) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


def start_gateway(workdir: Path, backend_port: int) -> tuple[subprocess.Popen[bytes], int]:
    venv = Path(
        subprocess.run(
            [str(REPO / "scripts" / "gateway-venv")], check=True, capture_output=True, text=True
        ).stdout.split()[-1]
    )
    backend = Backend("t", "m", "cpu", f"http://127.0.0.1:{backend_port}/v1", 10_000, 64)
    (workdir / "config.yaml").write_text(yaml.safe_dump(litellm_config([backend], 120)))
    (workdir / "routes.json").write_text(routes([backend], {}).to_json())
    (workdir / "keys.json").write_text(json.dumps({key_hash(TEAM_KEY): "t"}))
    port = free_port()
    env = {
        **os.environ,
        **gateway_environment(str(workdir), str(workdir), free_port()),
        "PYTHONPATH": str(REPO),
        "LITELLM_MASTER_KEY": f"sk-{secrets.token_hex(24)}",
        internal_key_env("t"): "internal",
        "LITELLM_LOG": "ERROR",
    }
    argv = gateway_argv(str(workdir / "config.yaml"), "127.0.0.1", port)
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(
        gateway_command(str(venv / "bin" / "python"), argv),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness")
    return process, port


async def ttft(client: httpx.AsyncClient, url: str) -> float:
    """Seconds from sending a streamed chat completion to its first content chunk (the rest
    of the stream is read to its end)."""
    start = time.perf_counter()
    first = 0.0
    async with client.stream("POST", url, json={**BODY, "stream": True}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not first and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - start
    if not first:
        raise RuntimeError("no content chunk")
    return first


async def run_clients(
    url: str, key: str, clients: int, requests: int, streamed: bool
) -> tuple[list[float], float]:
    """`requests` requests from `clients` concurrent clients: (per-request seconds, wall s)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        queue = list(range(requests))
        times: list[float] = []

        async def worker() -> None:
            while queue:
                queue.pop()
                if streamed:
                    times.append(await ttft(client, url))
                else:
                    start = time.perf_counter()
                    answer = await client.post(url, json=BODY)
                    answer.raise_for_status()
                    times.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return times, time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    backend_port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("stub_backend.py")), str(backend_port)]
    )
    with tempfile.TemporaryDirectory() as tmp:
        gateway, port = start_gateway(Path(tmp), backend_port)
        try:
            direct = f"http://127.0.0.1:{backend_port}/v1/chat/completions"
            through = f"http://127.0.0.1:{port}/v1/chat/completions"
            asyncio.run(run_clients(through, TEAM_KEY, 4, 40, True))  # warm both paths
            idle = rss_mib(gateway.pid)
            print(
                "| clients | TTFT p50 direct | p50 gateway | added p50 | p99 direct |"
                " p99 gateway | added p99 |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|")
            for clients in (1, 8, 32):
                rows = {}
                for name, url, key in (("direct", direct, "x"), ("gateway", through, TEAM_KEY)):
                    rows[name], _ = asyncio.run(run_clients(url, key, clients, args.requests, True))
                ms = {
                    n: (percentile(v, 50) * 1000, percentile(v, 99) * 1000) for n, v in rows.items()
                }
                d, g = ms["direct"], ms["gateway"]
                print(
                    f"| {clients} | {d[0]:.1f} ms | {g[0]:.1f} ms | {g[0] - d[0]:.1f} ms |"
                    f" {d[1]:.1f} ms | {g[1]:.1f} ms | {g[1] - d[1]:.1f} ms |"
                )
            rates = {}
            for name, url, key in (("direct", direct, "x"), ("gateway", through, TEAM_KEY)):
                done, wall = asyncio.run(run_clients(url, key, 32, args.requests * 2, False))
                rates[name] = len(done) / wall
            peak = rss_mib(gateway.pid)
            print()
            print(
                f"requests/s at 32 clients, not streamed: direct {rates['direct']:.0f}, "
                f"through one gateway process {rates['gateway']:.0f} "
                f"({rates['gateway'] / rates['direct']:.2f} of direct)"
            )
            print(f"gateway RSS: {idle:.0f} MiB after warm-up, {peak:.0f} MiB after the run")
            print(
                f"median of all gateway TTFTs: {statistics.median(rows['gateway']) * 1000:.1f} ms"
            )
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
            stub.terminate()


if __name__ == "__main__":
    main()
