"""Writes a tiny random-weight llama GGUF (a few hundred KB): a model small enough to carry to
a GPU machine, that still exercises loading, offload and generation. Its output is noise.

    .venv/bin/python tests/image/tiny_gguf.py OUT.gguf
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np

N_VOCAB, N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 327, 64, 4, 2, 128, 512


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


def write(path: Path) -> Path:
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llamafleet-tiny")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
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

    def tensor(name: str, *shape: int, norm: bool = False) -> None:
        data = np.ones(shape) if norm else rng.normal(0, 0.02, shape)
        writer.add_tensor(name, data.astype(np.float32))

    tensor("token_embd.weight", N_VOCAB, N_EMBD)
    tensor("output_norm.weight", N_EMBD, norm=True)
    tensor("output.weight", N_VOCAB, N_EMBD)
    for i in range(N_LAYER):
        tensor(f"blk.{i}.attn_norm.weight", N_EMBD, norm=True)
        for proj in ("q", "k", "v", "output"):
            tensor(f"blk.{i}.attn_{proj}.weight", N_EMBD, N_EMBD)
        tensor(f"blk.{i}.ffn_norm.weight", N_EMBD, norm=True)
        tensor(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
