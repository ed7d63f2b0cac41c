"""The exact llama-server argv for one model on one tier. Plain functions, no Pulumi.

Every flag here exists in the pinned llama.cpp build; tests/image checks them against its --help.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, StringConstraints

from llamafleet.components.config import ComponentConfig
from llamafleet.components.sizing import ServingShape, TierKind
from llamafleet.modelsync.splits import split_layout

LoadMode = Literal["mmap", "mlock", "mmap+mlock", "none"]

SERVER_PORT = 8080
MODEL_DIR = "/models"
API_KEY_DIR = "/etc/llamafleet/api-keys"
API_KEY_FILE = f"{API_KEY_DIR}/keys"
# More layers than any model has: -ngl counts layers, so this offloads all of them.
ALL_LAYERS = 999


# The built-in chat templates of the pinned build: the keys of LLM_CHAT_TEMPLATES in
# src/llama-chat.cpp (tests/image compares this set with the pinned source).
BUILTIN_CHAT_TEMPLATES: Final = frozenset(
    {
        *("bailing", "bailing-think", "bailing2", "chatglm3", "chatglm4", "chatml"),
        *("command-r", "deepseek", "deepseek-ocr", "deepseek2", "deepseek3", "exaone-moe"),
        *("exaone3", "exaone4", "falcon3", "gemma", "gigachat", "glmedge", "gpt-oss"),
        *("granite", "granite-4.0", "granite-4.1", "grok-2", "hunyuan-dense", "hunyuan-moe"),
        *("hunyuan-vl", "kimi-k2", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip"),
        *("llama3", "llama4", "megrez", "minicpm", "mistral-v1", "mistral-v3"),
        *("mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "monarch", "openchat"),
        *("orion", "pangu-embedded", "phi3", "phi4", "rwkv-world", "seed_oss", "smolvlm"),
        *("solar-open", "vicuna", "vicuna-orca", "yandex", "zephyr"),
    }
)


def builtin_chat_template_problem(name: str) -> str | None:
    """Why `name` is not a built-in chat template of the pinned build (None when it is)."""
    if name in BUILTIN_CHAT_TEMPLATES:
        return None
    close = difflib.get_close_matches(name, sorted(BUILTIN_CHAT_TEMPLATES), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return (
        f"{name!r} is not a built-in chat template of the pinned llama.cpp build{hint}; "
        "leave the key out to use the GGUF's own template"
    )


def _builtin_chat_template(name: str) -> str:
    problem = builtin_chat_template_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


BuiltinChatTemplate = Annotated[
    str,
    StringConstraints(max_length=32),
    AfterValidator(_builtin_chat_template),
]
StopWord = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=False)]


class SamplingDefaults(ComponentConfig):
    """Default sampling of a model's llama-server (`llamafleet:models.<name>.sampling`); a request
    that sets a field overrides it (tools/server/server-schema.cpp of the pinned build). Absent
    fields keep llama-server's own defaults (common/common.h)."""

    temperature: float | None = Field(default=None, ge=0, le=5, description="--temp.")
    top_k: int | None = Field(default=None, ge=0, le=1000, description="--top-k (0: off).")
    top_p: float | None = Field(default=None, ge=0, le=1, description="--top-p (1: off).")
    min_p: float | None = Field(default=None, ge=0, le=1, description="--min-p (0: off).")
    repeat_penalty: float | None = Field(
        default=None, ge=0, le=5, description="--repeat-penalty (1: off)."
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 2, description="--seed (absent: random per request)."
    )
    stop: list[StopWord] = Field(
        default_factory=list[str],
        max_length=16,
        description="Stop strings (--reverse-prompt each): generation ends before the first "
        "one produced, unless a request sets its own `stop`.",
    )


def model_path(digest: str, shard_count: int = 1) -> str:
    """Where the fetcher leaves a verified model: content-addressed, like the store; a split
    model's first shard under its split name, the others beside it (splits.split_layout)."""
    algorithm, hexdigest = digest.split(":", 1)
    if shard_count > 1:
        return f"{MODEL_DIR}/{split_layout(hexdigest, shard_count)}"
    return f"{MODEL_DIR}/{algorithm}/{hexdigest}.gguf"


class EmbeddingsConfig(ComponentConfig):
    """A model served for embeddings (`llamafleet:models.<name>.embeddings`): its llama-servers
    start with --embeddings, and the gateway sends it `/v1/embeddings` only (the pinned server
    would still run a chat on it, badly). To embed with a chat model's file, declare the file
    a second time under another name, with this key: a Deployment of its own."""

    pooling: Literal["mean", "cls", "last"] | None = Field(
        default=None,
        description="--pooling: how token vectors become one (mean, cls, last); absent: the "
        "GGUF's own pooling type. A model whose GGUF names none needs one: without it the "
        "server has no OpenAI embeddings to give.",
    )


@dataclass(frozen=True)
class ServerOptions:
    """What `server_args` turns into llama-server flags.

    Attributes:
        alias: The model name clients ask for (--alias).
        digest: The GGUF's digest ALGORITHM:HEX (e.g. sha256:...); names the file (--model).
        shard_digests: A split model's shards 2..N (digest is shard 1's), in order; the
            fetcher fetches each and --model names shard 1 under its split name.
        adapters: LoRA adapters, each (digest, scale), in order: --lora FILE at scale 1,
            else --lora-scaled FILE:SCALE (common/arg.cpp of the pinned build).
        projector_digest: A multimodal projector's digest (--mmproj FILE), or None.
        shape: Slots, context, threads and caches (--parallel, --ctx-size, --threads, ...).
        tier_kind: gpu adds --n-gpu-layers 999 (every layer offloaded).
        request_timeout_seconds: --timeout, seconds; also part of the pod's drain window.
        load_mode: --load-mode of the pinned build (default mmap).
        chat_template: A built-in template of the pinned build, passed with --no-jinja (the
            build's Jinja default would compile the name as template source); None: the GGUF's
            own template, under Jinja.
        sampling: Default sampling flags; the empty config passes none.
        max_tokens: --n-predict, the tokens a request that names no limit generates at most;
            None: no such default. Only a default: in the pinned build a request's own
            n_predict/max_tokens takes priority (tools/server/server-context.cpp, "the
            per-request limit takes priority over the global one"), so the gateway caps it.
        embeddings: Serve embeddings (--embeddings, its --pooling, and a batch of a whole
            slot's context, `shape.ubatch`) instead of generating; None: generation.

    Raises:
        ValueError: `embeddings` given without `shape.embeddings`, or the reverse.
    """

    alias: str
    digest: str
    shape: ServingShape
    tier_kind: TierKind
    request_timeout_seconds: int
    shard_digests: tuple[str, ...] = ()
    adapters: tuple[tuple[str, float], ...] = ()
    projector_digest: str | None = None
    load_mode: LoadMode = "mmap"

    def __post_init__(self) -> None:
        if (self.embeddings is not None) != self.shape.embeddings:
            raise ValueError("embeddings and shape.embeddings must agree (the pod is sized so)")

    @property
    def part_digests(self) -> tuple[str, ...]:
        """The digests of the files served beside the model: adapters, then the projector."""
        projector = (self.projector_digest,) if self.projector_digest is not None else ()
        return (*(digest for digest, _ in self.adapters), *projector)

    chat_template: str | None = None
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    max_tokens: int | None = None
    embeddings: EmbeddingsConfig | None = None


def part_args(opts: ServerOptions) -> list[str]:
    """--lora/--lora-scaled per adapter and --mmproj for a projector, each naming its fetched
    file (model_path). --lora splits its value at commas and --lora-scaled at the colon before
    the scale (common/arg.cpp); the pod's content-addressed paths hold neither (`llamafleet
    serve` maps them under its cache folder, which must not either)."""
    args: list[str] = []
    for digest, scale in opts.adapters:
        path = model_path(digest)
        args += ["--lora", path] if scale == 1 else ["--lora-scaled", f"{path}:{scale:g}"]
    if opts.projector_digest is not None:
        args += ["--mmproj", model_path(opts.projector_digest)]
    return args


def chat_template_args(name: str | None) -> list[str]:
    """--chat-template with a built-in name needs --no-jinja: with Jinja on (the pinned build's
    default, common/common.h) only `chatml` is special-cased and any other name is compiled as
    the template's source, so every prompt becomes the name itself (../shared/cases/c10)."""
    return [] if name is None else ["--no-jinja", "--chat-template", name]


def sampling_args(sampling: SamplingDefaults) -> list[str]:
    """The sampling flags the settings set, in a fixed order; one --reverse-prompt per stop word
    (each adds a default stop string in the pinned server)."""
    flags: list[tuple[str, float | int | None]] = [
        ("--temp", sampling.temperature),
        ("--top-k", sampling.top_k),
        ("--top-p", sampling.top_p),
        ("--min-p", sampling.min_p),
        ("--repeat-penalty", sampling.repeat_penalty),
        ("--seed", sampling.seed),
    ]
    args = [item for flag, value in flags if value is not None for item in (flag, str(value))]
    for word in sampling.stop:
        args += ["--reverse-prompt", word]
    return args


def embeddings_args(embeddings: EmbeddingsConfig, shape: ServingShape) -> list[str]:
    """--embeddings, --pooling when the settings name one, and a logical and physical batch of
    `shape.ubatch` tokens (a slot's context): a pooled input is embedded in one ubatch, and the
    pinned server refuses an input longer than it."""
    pooling = [] if embeddings.pooling is None else ["--pooling", embeddings.pooling]
    batch = str(shape.ubatch)
    return ["--embeddings", *pooling, "--batch-size", batch, "--ubatch-size", batch]


def server_args(opts: ServerOptions) -> list[str]:
    """llama-server arguments, each with the reason it is there."""
    shape = opts.shape
    args = [
        # Explicit: the default binds to loopback, and the default port is moving to 9931.
        *("--host", "0.0.0.0", "--port", str(SERVER_PORT)),  # noqa: S104 (pod IP, policed)
        *("--model", model_path(opts.digest, 1 + len(opts.shard_digests))),
        *part_args(opts),
        # Clients ask for the model by its settings name, not the file name.
        *("--alias", opts.alias),
        # llama-server ignores cgroup quotas; one thread per host core collapses throughput.
        *("--threads", str(shape.cpus), "--threads-batch", str(shape.cpus)),
        *("--ctx-size", str(shape.total_context), "--parallel", str(shape.parallel)),
        # -c is shared by the -np slots through one unified KV buffer; an embeddings server
        # keeps a slot's context to its share, the batch it embeds in (a longer input is then
        # refused as too long, 400, not failed in the batch, 500).
        *([] if opts.embeddings is not None else ["--kv-unified"]),
        # The prompt cache defaults to 8 GiB of host RAM: bound it inside the memory limit.
        *("--cache-ram", str(shape.cache_ram_mib)),
        # The pinned build's loader flag; --no-mmap/--mlock are gone from it.
        *("--load-mode", opts.load_mode),
        # Prometheus scrapes llamacpp:requests_deferred, the queue the autoscaler follows.
        "--metrics",
        # The keys the gateway and the scraper present, from a mounted Secret (never argv or
        # the environment); clients' own keys end at the gateway.
        *("--api-key-file", API_KEY_FILE),
        # Nothing outlives the pod's drain window.
        *("--timeout", str(opts.request_timeout_seconds)),
        # The web UI is not an API; keep the surface small.
        "--no-ui",
    ]
    if opts.embeddings is not None:
        args += embeddings_args(opts.embeddings, shape)
    elif opts.max_tokens is not None:
        # A request that names no limit stays bounded too (the gateway caps the others).
        args += ["--n-predict", str(opts.max_tokens)]
    if shape.kv_cache_type != "f16":
        args += ["--cache-type-k", shape.kv_cache_type, "--cache-type-v", shape.kv_cache_type]
    if opts.tier_kind == "gpu":
        # Only GPU tiers offload; CPU builds have no device to offload to.
        args += ["--n-gpu-layers", str(ALL_LAYERS)]
    return args + chat_template_args(opts.chat_template) + sampling_args(opts.sampling)
