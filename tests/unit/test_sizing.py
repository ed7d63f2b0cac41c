from __future__ import annotations

from dataclasses import replace

import pytest

from llamafleet.components.sizing import (
    GgufFacts,
    GiB,
    MiB,
    ServingShape,
    TierShape,
    fit_problems,
    kv_bytes_per_token,
    kv_cache_bytes,
    kv_cells_per_layer,
    size_pod,
    startup_failure_threshold,
)

# The real gemma3-270m Q4_K_M header (tests/image serves this file).
GEMMA = GgufFacts(
    size_bytes=253_113_024,
    block_count=18,
    head_count_kv=1,
    key_length=256,
    value_length=256,
    context_length=32768,
    vocab_size=262_144,
)
LLAMA_8B = GgufFacts(
    size_bytes=4_920_739_232,
    block_count=32,
    head_count_kv=8,
    key_length=128,
    value_length=128,
    context_length=131072,
    vocab_size=128_256,
)
CPU_NODE = TierShape("cpu", "cpu", cpus_per_node=16, memory_per_node_bytes=64 * GiB)
L4_NODE = TierShape(
    "l4",
    "gpu",
    cpus_per_node=8,
    memory_per_node_bytes=32 * GiB,
    gpus_per_node=1,
    gpu_memory_bytes=22 * GiB,
)


def shape(**overrides: object) -> ServingShape:
    base: dict[str, object] = {
        "context_per_slot": 4096,
        "parallel": 4,
        "cpus": 4,
        "cache_ram_mib": 512,
    }
    base.update(overrides)
    return ServingShape(**base)  # type: ignore[arg-type]


def test_kv_bytes_per_token_counts_keys_and_values_of_every_layer_and_kv_head() -> None:
    assert kv_bytes_per_token(GEMMA, "f16") == 18 * 1 * (256 + 256) * 2
    assert kv_bytes_per_token(LLAMA_8B, "f16") == 128 * 1024


def test_quantised_kv_cache_is_smaller_than_f16() -> None:
    assert kv_bytes_per_token(LLAMA_8B, "q8_0") == pytest.approx(128 * 1024 * 34 / 64)
    assert kv_bytes_per_token(LLAMA_8B, "q4_0") < kv_bytes_per_token(LLAMA_8B, "q8_0")


def test_total_context_is_per_slot_times_slots() -> None:
    assert shape(context_per_slot=8192, parallel=4).total_context == 32768


def test_cpu_pod_memory_holds_weights_kv_prompt_cache_and_overhead() -> None:
    sizing = size_pod(LLAMA_8B, shape(context_per_slot=8192, parallel=4, cache_ram_mib=1024), "cpu")
    assert sizing.kv_cache_bytes == 128 * 1024 * 32768  # 4 GiB
    assert sizing.cache_ram_bytes == 1024 * MiB
    assert sizing.overhead_bytes == 256 * MiB + 128_256 * 512 * 4
    parts = (
        sizing.weights_bytes
        + sizing.kv_cache_bytes
        + sizing.cache_ram_bytes
        + sizing.overhead_bytes
    )
    assert parts <= sizing.memory_bytes < parts + MiB
    assert sizing.memory_bytes % MiB == 0


def test_gpu_pod_keeps_weights_and_kv_on_the_gpu_not_in_host_memory() -> None:
    cpu = size_pod(LLAMA_8B, shape(), "cpu")
    gpu = size_pod(LLAMA_8B, shape(gpus=1), "gpu")
    assert gpu.memory_bytes < cpu.memory_bytes - LLAMA_8B.size_bytes
    assert (
        gpu.gpu_memory_needed_bytes == LLAMA_8B.size_bytes + gpu.kv_cache_bytes + gpu.overhead_bytes
    )
    assert cpu.gpu_memory_needed_bytes == 0


def test_a_fitting_pod_has_no_problems() -> None:
    assert fit_problems(size_pod(GEMMA, shape(), "cpu"), CPU_NODE) == []
    assert fit_problems(size_pod(LLAMA_8B, shape(gpus=1), "gpu"), L4_NODE) == []


def test_too_much_context_for_the_node_memory_is_reported_with_the_breakdown() -> None:
    huge = shape(context_per_slot=131072, parallel=4)
    (problem,) = fit_problems(size_pod(LLAMA_8B, huge, "cpu"), CPU_NODE)
    assert "KV cache 64.0" in problem
    assert "can allocate 57.6 GiB" in problem


def test_node_reserves_are_subtracted_before_fitting() -> None:
    assert CPU_NODE.allocatable_memory_bytes == 64 * GiB - int(64 * GiB * 0.1)
    assert CPU_NODE.allocatable_cpus == pytest.approx(14.4)
    small = TierShape("tiny", "cpu", cpus_per_node=2, memory_per_node_bytes=4 * GiB)
    assert small.allocatable_memory_bytes == 3 * GiB
    assert small.allocatable_cpus == 1.5


def test_too_many_threads_for_the_node_is_reported() -> None:
    (problem,) = fit_problems(size_pod(GEMMA, shape(cpus=16), "cpu"), CPU_NODE)
    assert "asks for 16 CPUs" in problem


def test_gpu_memory_and_gpu_count_are_checked() -> None:
    long_context = shape(context_per_slot=65536, parallel=4, gpus=1)
    (problem,) = fit_problems(size_pod(LLAMA_8B, long_context, "gpu"), L4_NODE)
    assert "GiB of GPU memory" in problem
    (problem,) = fit_problems(size_pod(LLAMA_8B, shape(gpus=2), "gpu"), L4_NODE)
    assert "asks for 2 GPUs" in problem


def test_startup_budget_grows_with_model_size() -> None:
    assert startup_failure_threshold(GEMMA, 10) == 7
    assert startup_failure_threshold(LLAMA_8B, 10) == 16


GEMMA_SWA = replace(
    GEMMA, sliding_window=512, sliding_window_layers=tuple(il % 6 < 5 for il in range(18))
)
# LFM2-1.2B's shape (../shared/cases/c08): 16 layers, 8 KV heads on 6 of them, 64-wide heads.
LFM2 = GgufFacts(
    size_bytes=730_000_000,
    block_count=16,
    head_count_kv=(0, 0, 8, 0, 0, 8, 0, 0, 8, 0, 8, 0, 8, 0, 8, 0),
    key_length=64,
    value_length=64,
    context_length=128_000,
    vocab_size=65_536,
)


def test_per_layer_kv_heads_charge_only_layers_that_have_them() -> None:
    assert kv_bytes_per_token(LFM2, "f16") == 6 * 8 * (64 + 64) * 2  # 12 KiB, not 128
    assert kv_cache_bytes(LFM2, shape(context_per_slot=32768, parallel=4)) == 131072 * 12 * 1024


def test_sliding_window_layers_hold_the_window_per_slot_plus_a_ubatch_padded() -> None:
    cells = kv_cells_per_layer(GEMMA_SWA, shape(context_per_slot=4096, parallel=2))
    assert cells.count(8192) == 3  # the full-attention layers: the whole context
    assert cells.count(1536) == 15  # 512 x 2 slots + 512, padded to 256
    small = kv_cells_per_layer(GEMMA_SWA, shape(context_per_slot=256, parallel=1))
    assert set(small) == {256}  # never more than the whole context


def test_context_is_padded_to_256_cells() -> None:
    assert set(kv_cells_per_layer(GEMMA, shape(context_per_slot=1000, parallel=1))) == {1024}


def test_a_window_without_a_pattern_is_charged_in_full() -> None:
    no_pattern = replace(GEMMA_SWA, sliding_window_layers=None)
    assert kv_cache_bytes(no_pattern, shape()) > kv_cache_bytes(GEMMA_SWA, shape())


def test_an_embeddings_pod_holds_buffers_for_a_whole_slot_as_one_ubatch() -> None:
    """Measured on the pinned build (sizing.EMBEDDINGS_BUFFERS_PER_TOKEN): about twice the
    vocabulary's floats per ubatch token, and the ubatch is a slot's context."""
    embedding = shape(context_per_slot=2048, parallel=1, embeddings=True)
    assert embedding.ubatch == 2048 and shape().ubatch == 512
    sizing = size_pod(GEMMA, embedding, "cpu")
    assert sizing.overhead_bytes == 256 * MiB + 262_144 * 2048 * 4 * 2
    generating = size_pod(GEMMA, shape(context_per_slot=2048, parallel=1), "cpu")
    assert sizing.memory_bytes - generating.memory_bytes == (
        sizing.overhead_bytes - generating.overhead_bytes
    )


def test_an_embeddings_pod_holds_the_whole_context_on_sliding_window_layers() -> None:
    """Without --kv-unified and with a ubatch of a slot's context, a window saves nothing."""
    windowed = replace(GEMMA, sliding_window=512, sliding_window_layers=(True, False) * 9)
    embedding = shape(context_per_slot=2048, parallel=2, embeddings=True)
    assert set(kv_cells_per_layer(windowed, embedding)) == {4096}
    assert min(kv_cells_per_layer(windowed, shape(context_per_slot=2048, parallel=2))) < 4096
