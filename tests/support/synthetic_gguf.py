"""Synthetic GGUF files for tests and benchmarks: a tiny but valid header, chosen tensor bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

_UINT32, _STRING, _ARRAY = 4, 8, 9


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf_value(value: object) -> tuple[int, bytes]:
    if isinstance(value, str):
        return _STRING, _gguf_string(value)
    if isinstance(value, int):
        return _UINT32, struct.pack("<I", value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        items: list[str] = value  # type: ignore[assignment]
        body = b"".join(_gguf_string(item) for item in items)
        return _ARRAY, struct.pack("<IQ", _STRING, len(items)) + body
    raise TypeError(value)


@dataclass
class GgufSpec:
    """What a synthetic GGUF file declares; the defaults look like a tiny llama."""

    architecture: str = "llama"
    metadata: dict[str, object] = field(default_factory=dict[str, object])
    tokens: int = 300
    tensor_bytes: int = 4096  # one F32 tensor of tensor_bytes // 4 elements
    fill: bytes = b"\x01"
    version: int = 3

    def header(self) -> bytes:
        arch = self.architecture
        kv: dict[str, object] = {
            "general.architecture": arch,
            "general.name": "synthetic",
            "general.file_type": 15,
            f"{arch}.context_length": 4096,
            f"{arch}.block_count": 4,
            f"{arch}.embedding_length": 256,
            f"{arch}.attention.head_count": 8,
            f"{arch}.attention.head_count_kv": 2,
            "tokenizer.ggml.tokens": [f"t{i}" for i in range(self.tokens)],
        } | self.metadata
        out = b"GGUF" + struct.pack("<IQQ", self.version, 1, len(kv))
        for key, value in kv.items():
            value_type, payload = _gguf_value(value)
            out += _gguf_string(key) + struct.pack("<I", value_type) + payload
        elements = self.tensor_bytes // 4
        out += _gguf_string("weights") + struct.pack("<IQIQ", 1, elements, 0, 0)
        return out + b"\0" * (-len(out) % 32)


def write_gguf(path: Path, spec: GgufSpec | None = None, sparse: bool = False) -> Path:
    """A valid GGUF file; `sparse` leaves the tensor data as a hole (cheap multi-GB files)."""
    spec = spec or GgufSpec()
    header = spec.header()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(header)
        if sparse:
            out.truncate(len(header) + spec.tensor_bytes)
        else:
            repeats = -(-spec.tensor_bytes // len(spec.fill))
            out.write((spec.fill * repeats)[: spec.tensor_bytes])
    return path
