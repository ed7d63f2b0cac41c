from __future__ import annotations

import pytest

from llamafleet.components.server_args import (
    API_KEY_FILE,
    BUILTIN_CHAT_TEMPLATES,
    EmbeddingsConfig,
    SamplingDefaults,
    ServerOptions,
    builtin_chat_template_problem,
    model_path,
    server_args,
)
from llamafleet.components.sizing import ServingShape

DIGEST = "sha256:" + "ab" * 32


def options(**overrides: object) -> ServerOptions:
    base: dict[str, object] = {
        "alias": "gemma3-270m",
        "digest": DIGEST,
        "shape": ServingShape(context_per_slot=2048, parallel=3, cpus=6, cache_ram_mib=300),
        "tier_kind": "cpu",
        "request_timeout_seconds": 120,
    }
    base.update(overrides)
    return ServerOptions(**base)  # type: ignore[arg-type]


def value_of(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} must appear exactly once in {args}"
    return args[args.index(flag) + 1]


def test_binds_all_interfaces_on_an_explicit_port() -> None:
    args = server_args(options())
    assert value_of(args, "--host") == "0.0.0.0"  # noqa: S104
    assert value_of(args, "--port") == "8080"


def test_threads_equal_the_cpu_limit() -> None:
    args = server_args(options())
    assert value_of(args, "--threads") == "6"
    assert value_of(args, "--threads-batch") == "6"


def test_context_covers_every_slot_in_one_unified_kv_buffer() -> None:
    args = server_args(options())
    assert value_of(args, "--ctx-size") == str(2048 * 3)
    assert value_of(args, "--parallel") == "3"
    assert "--kv-unified" in args


def test_prompt_cache_metrics_keys_timeout_and_load_mode() -> None:
    args = server_args(options(load_mode="mlock"))
    assert value_of(args, "--cache-ram") == "300"
    assert "--metrics" in args
    assert value_of(args, "--api-key-file") == API_KEY_FILE
    assert value_of(args, "--timeout") == "120"
    assert value_of(args, "--load-mode") == "mlock"
    assert "--no-mmap" not in args and "--mlock" not in args


def test_model_is_the_content_addressed_file_the_fetcher_verified() -> None:
    args = server_args(options())
    assert value_of(args, "--model") == f"/models/sha256/{'ab' * 32}.gguf"
    assert model_path(DIGEST) == value_of(args, "--model")
    assert value_of(args, "--alias") == "gemma3-270m"


def test_gpu_layers_only_on_gpu_tiers() -> None:
    assert "--n-gpu-layers" not in server_args(options())
    assert value_of(server_args(options(tier_kind="gpu")), "--n-gpu-layers") == "999"


@pytest.mark.parametrize("kv_type", ["q8_0", "q4_0"])
def test_quantised_kv_cache_sets_both_k_and_v_types(kv_type: str) -> None:
    shape = ServingShape(2048, 2, 2, 0, kv_cache_type=kv_type)  # type: ignore[arg-type]
    args = server_args(options(shape=shape))
    assert value_of(args, "--cache-type-k") == kv_type
    assert value_of(args, "--cache-type-v") == kv_type
    assert "--cache-type-k" not in server_args(options())


def test_chat_template_only_when_set_and_then_without_jinja() -> None:
    """A built-in name under the build's Jinja default is compiled as template source (c10)."""
    default = server_args(options())
    assert "--chat-template" not in default and "--no-jinja" not in default
    named = server_args(options(chat_template="gemma"))
    assert value_of(named, "--chat-template") == "gemma"
    assert named.index("--no-jinja") < named.index("--chat-template")


def test_builtin_chat_template_names_are_checked() -> None:
    assert builtin_chat_template_problem("chatml") is None
    assert {"gemma", "llama3", "chatml"} <= BUILTIN_CHAT_TEMPLATES
    problem = builtin_chat_template_problem("llama-3")
    assert problem is not None and "did you mean llama3" in problem, problem


def test_sampling_flags_only_for_what_is_set() -> None:
    args = server_args(options())
    assert not {"--temp", "--top-k", "--seed", "--reverse-prompt"} & set(args)
    sampling = SamplingDefaults(temperature=0, top_k=40, top_p=0.9, min_p=0.05, seed=4294967294)
    args = server_args(options(sampling=sampling))
    assert value_of(args, "--temp") == "0.0"
    assert value_of(args, "--top-k") == "40"
    assert value_of(args, "--top-p") == "0.9"
    assert value_of(args, "--min-p") == "0.05"
    assert value_of(args, "--seed") == "4294967294"
    assert "--repeat-penalty" not in args


def test_each_stop_string_is_its_own_reverse_prompt_kept_verbatim() -> None:
    args = server_args(options(sampling=SamplingDefaults(stop=["\n\n", " User:"])))
    values = [args[i + 1] for i, arg in enumerate(args) if arg == "--reverse-prompt"]
    assert values == ["\n\n", " User:"]


def test_no_key_flag_but_the_key_file_appears_in_argv() -> None:
    """llama-server also takes `--api-key KEY` (readable by anyone who can list processes); the
    argv names only the file, whatever the options."""
    allowed = {"--api-key-file", API_KEY_FILE}
    for variant in (options(), options(chat_template="chatml"), options(tier_kind="gpu")):
        argv = server_args(variant)
        assert "--api-key" not in argv
        assert not [a for a in argv if "key" in a.lower() and a not in allowed]
        assert value_of(argv, "--api-key-file") == API_KEY_FILE


def test_an_embeddings_server_batches_a_whole_slot_and_generates_nothing() -> None:
    embedding_shape = ServingShape(
        context_per_slot=2048, parallel=3, cpus=6, cache_ram_mib=300, embeddings=True
    )
    args = server_args(
        options(embeddings=EmbeddingsConfig(pooling="mean"), max_tokens=64, shape=embedding_shape)
    )
    assert "--embeddings" in args and value_of(args, "--pooling") == "mean"
    # A pooled input must fit one ubatch: a slot's context, not the default 512.
    assert value_of(args, "--batch-size") == value_of(args, "--ubatch-size") == "2048"
    assert "--n-predict" not in args
    # A slot's context is its share, so a longer input is refused as too long (400).
    assert "--kv-unified" not in args
    generating = server_args(options(max_tokens=64))
    assert "--embeddings" not in generating and "--ubatch-size" not in generating


def test_an_embeddings_server_keeps_the_ggufs_own_pooling_unless_told() -> None:
    embedding_shape = ServingShape(
        context_per_slot=512, parallel=1, cpus=1, cache_ram_mib=0, embeddings=True
    )
    assert "--pooling" not in server_args(
        options(embeddings=EmbeddingsConfig(), shape=embedding_shape)
    )
    with pytest.raises(ValueError, match="must agree"):
        options(embeddings=EmbeddingsConfig())
