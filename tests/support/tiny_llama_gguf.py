"""Small valid GGUF files (a tiny llama: 4 layers, 8 heads, 2 KV heads of 32), written with the
`gguf` package's own writer, for tests that sync, inspect or deploy models."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_gguf(path: Path, fill: float = 1.0, elements: int = 1024) -> Path:
    """Write the file; `fill` changes the content, not the size; `elements` (float32) the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_context_length(4096)
    writer.add_block_count(4)
    writer.add_embedding_length(256)
    writer.add_head_count(8)
    writer.add_head_count_kv(2)
    writer.add_file_type(15)
    writer.add_tensor("weights", np.full(elements, fill, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
