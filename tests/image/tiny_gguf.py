"""Writes tiny random-weight GGUFs (a few hundred KB) the pinned llama-server loads: a llama,
small enough to carry to a GPU machine, that still exercises loading, offload and generation,
and a hybrid LFM2 (convolution layers without KV heads between attention layers) for sizing.
Their output is noise.

    .venv/bin/python tests/image/tiny_gguf.py OUT.gguf [hybrid]
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

N_VOCAB, N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 327, 64, 4, 2, 128, 512
# The hybrid's KV heads per layer, LFM2-style: 0 on the short-convolution layers.
HYBRID_KV_HEADS = [0, 0, 2, 0, 2, 0, 0, 2]
# 32-wide heads: a quantised KV cache needs head sizes divisible by its 32-value blocks.
HYBRID_HEADS = 2
SHORTCONV_CACHE = 3


def vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    words = [f"\u2581{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    words += [f"\u2581{a}{b}" for a in "aeiost" for b in "nrtlsdh"]
    tokens += words
    types += [gguf.TokenType.NORMAL] * len(words)
    assert len(tokens) == N_VOCAB
    return tokens, [-float(i) for i in range(N_VOCAB)], [int(t) for t in types]


def _writer(path: Path, arch: str, heads: int) -> gguf.GGUFWriter:
    """A writer with the shared hyperparameters and the byte-level vocabulary."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"llamafleet-tiny-{arch}")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = vocab()
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    return writer


def _add(writer: gguf.GGUFWriter, rng: np.random.Generator, name: str, *shape: int) -> None:
    """One F32 tensor: ones for norms (1-D), small noise for weights."""
    data = np.ones(shape) if len(shape) == 1 else rng.normal(0, 0.02, shape)
    writer.add_tensor(name, data.astype(np.float32))


def _add_ffn(writer: gguf.GGUFWriter, rng: np.random.Generator, i: int) -> None:
    _add(writer, rng, f"blk.{i}.ffn_norm.weight", N_EMBD)
    _add(writer, rng, f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
    _add(writer, rng, f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
    _add(writer, rng, f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write(path: Path) -> Path:
    """The llama: N_LAYER attention layers, every head a KV head."""
    rng = np.random.default_rng(0)
    writer = _writer(path, "llama", N_HEAD)
    writer.add_block_count(N_LAYER)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    _add(writer, rng, "token_embd.weight", N_VOCAB, N_EMBD)
    _add(writer, rng, "output_norm.weight", N_EMBD)
    _add(writer, rng, "output.weight", N_VOCAB, N_EMBD)
    for i in range(N_LAYER):
        _add(writer, rng, f"blk.{i}.attn_norm.weight", N_EMBD)
        for proj in ("q", "k", "v", "output"):
            _add(writer, rng, f"blk.{i}.attn_{proj}.weight", N_EMBD, N_EMBD)
        _add_ffn(writer, rng, i)
    return _finish(writer, path)


def write_hybrid(path: Path) -> Path:
    """The LFM2 hybrid: `head_count_kv` is a per-layer array, 0 on short-convolution layers
    (src/models/lfm2.cpp of the pinned build: those layers are recurrent, hold no KV)."""
    rng = np.random.default_rng(1)
    writer = _writer(path, "lfm2", HYBRID_HEADS)
    writer.add_block_count(len(HYBRID_KV_HEADS))
    writer.add_head_count_kv(HYBRID_KV_HEADS)
    writer.add_shortconv_l_cache(SHORTCONV_CACHE)
    head_dim = N_EMBD // HYBRID_HEADS
    _add(writer, rng, "token_embd.weight", N_VOCAB, N_EMBD)
    _add(writer, rng, "token_embd_norm.weight", N_EMBD)
    for i, kv_heads in enumerate(HYBRID_KV_HEADS):
        _add(writer, rng, f"blk.{i}.attn_norm.weight", N_EMBD)
        if kv_heads:
            _add(writer, rng, f"blk.{i}.attn_q_norm.weight", head_dim)
            _add(writer, rng, f"blk.{i}.attn_k_norm.weight", head_dim)
            _add(writer, rng, f"blk.{i}.attn_q.weight", N_EMBD, N_EMBD)
            _add(writer, rng, f"blk.{i}.attn_k.weight", kv_heads * head_dim, N_EMBD)
            _add(writer, rng, f"blk.{i}.attn_v.weight", kv_heads * head_dim, N_EMBD)
            _add(writer, rng, f"blk.{i}.attn_output.weight", N_EMBD, N_EMBD)
        else:
            _add(writer, rng, f"blk.{i}.shortconv.conv.weight", N_EMBD, SHORTCONV_CACHE)
            _add(writer, rng, f"blk.{i}.shortconv.in_proj.weight", 3 * N_EMBD, N_EMBD)
            _add(writer, rng, f"blk.{i}.shortconv.out_proj.weight", N_EMBD, N_EMBD)
        _add_ffn(writer, rng, i)
    return _finish(writer, path)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(write_hybrid(target) if sys.argv[2:] == ["hybrid"] else write(target))
