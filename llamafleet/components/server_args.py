"""The exact llama-server argv for one model on one tier. Plain functions, no Pulumi.

Every flag here exists in the pinned llama.cpp build; tests/image checks them against its --help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llamafleet.components.sizing import ServingShape, TierKind

LoadMode = Literal["mmap", "mlock", "mmap+mlock", "none"]

SERVER_PORT = 8080
MODEL_DIR = "/models"
API_KEY_DIR = "/etc/llamafleet/api-keys"
API_KEY_FILE = f"{API_KEY_DIR}/keys"
# More layers than any model has: -ngl counts layers, so this offloads all of them.
ALL_LAYERS = 999


def model_path(digest: str) -> str:
    """Where the fetcher leaves a verified model: content-addressed, like the store."""
    algorithm, hexdigest = digest.split(":", 1)
    return f"{MODEL_DIR}/{algorithm}/{hexdigest}.gguf"


@dataclass(frozen=True)
class ServerOptions:
    """What `server_args` turns into llama-server flags.

    Attributes:
        alias: The model name clients ask for (--alias).
        digest: The GGUF's digest ALGORITHM:HEX (e.g. sha256:...); names the file (--model).
        shape: Slots, context, threads and caches (--parallel, --ctx-size, --threads, ...).
        tier_kind: gpu adds --n-gpu-layers 999 (every layer offloaded).
        request_timeout_seconds: --timeout, seconds; also part of the pod's drain window.
        load_mode: --load-mode of the pinned build (default mmap).
        chat_template: --chat-template; None: the flag is not passed.
    """

    alias: str
    digest: str
    shape: ServingShape
    tier_kind: TierKind
    request_timeout_seconds: int
    load_mode: LoadMode = "mmap"
    chat_template: str | None = None


def server_args(opts: ServerOptions) -> list[str]:
    """llama-server arguments, each with the reason it is there."""
    shape = opts.shape
    args = [
        # Explicit: the default binds to loopback, and the default port is moving to 9931.
        *("--host", "0.0.0.0", "--port", str(SERVER_PORT)),  # noqa: S104 (pod IP, policed)
        *("--model", model_path(opts.digest)),
        # Clients ask for the model by its settings name, not the file name.
        *("--alias", opts.alias),
        # llama-server ignores cgroup quotas; one thread per host core collapses throughput.
        *("--threads", str(shape.cpus), "--threads-batch", str(shape.cpus)),
        # -c is shared by the -np slots through one unified KV buffer.
        *("--ctx-size", str(shape.total_context), "--parallel", str(shape.parallel)),
        "--kv-unified",
        # The prompt cache defaults to 8 GiB of host RAM: bound it inside the memory limit.
        *("--cache-ram", str(shape.cache_ram_mib)),
        # The pinned build's loader flag; --no-mmap/--mlock are gone from it.
        *("--load-mode", opts.load_mode),
        # Prometheus scrapes llamacpp:requests_deferred, the queue the autoscaler follows.
        "--metrics",
        # Team keys come from a mounted Secret, never from argv or the environment.
        *("--api-key-file", API_KEY_FILE),
        # Nothing outlives the pod's drain window.
        *("--timeout", str(opts.request_timeout_seconds)),
        # The web UI is not an API; keep the surface small.
        "--no-ui",
    ]
    if shape.kv_cache_type != "f16":
        args += ["--cache-type-k", shape.kv_cache_type, "--cache-type-v", shape.kv_cache_type]
    if opts.tier_kind == "gpu":
        # Only GPU tiers offload; CPU builds have no device to offload to.
        args += ["--n-gpu-layers", str(ALL_LAYERS)]
    if opts.chat_template is not None:
        args += ["--chat-template", opts.chat_template]
    return args
