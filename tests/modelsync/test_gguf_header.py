"""GGUF header reading: fields, defaults, and every way a file can be wrong."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.reference_gguf import write_reference
from support.synthetic_gguf import GgufSpec, write_gguf

from llamafleet.modelsync.errors import GgufError, ModelSyncError
from llamafleet.modelsync.gguf import SplitInfo, read_header
from llamafleet.modelsync.servable import read_servable_header

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
JSON_KEYS = [
    "version",
    "tensorCount",
    "architecture",
    "name",
    "contextLength",
    "blockCount",
    "embeddingLength",
    "headCount",
    "headCountKv",
    "keyLength",
    "valueLength",
    "vocabSize",
    "fileType",
]


def test_header_fields_and_defaults(gguf_file: Callable[..., Path]) -> None:
    header = read_header(gguf_file(tokens=1234)).to_json()

    assert list(header) == JSON_KEYS  # no slidingWindow when the file has none
    assert header == {
        "version": 3,
        "tensorCount": 1,
        "architecture": "llama",
        "name": "synthetic",
        "contextLength": 4096,
        "blockCount": 4,
        "embeddingLength": 256,
        "headCount": 8,
        "headCountKv": 2,
        "keyLength": 32,  # embedding_length / head_count when the arch has no key_length
        "valueLength": 32,
        "vocabSize": 1234,
        "fileType": "Q4_K_M",
    }


def test_explicit_key_length_and_sliding_window(gguf_file: Callable[..., Path]) -> None:
    spec = GgufSpec(
        architecture="gemma3",
        metadata={
            "gemma3.attention.key_length": 256,
            "gemma3.attention.value_length": 128,
            "gemma3.attention.sliding_window": 512,
            "general.file_type": 7,
        },
    )
    header = read_header(gguf_file(spec=spec)).to_json()

    assert header["keyLength"] == 256
    assert header["valueLength"] == 128
    assert header["slidingWindow"] == 512
    assert header["fileType"] == "Q8_0"


def test_gguf_version_2_is_read(gguf_file: Callable[..., Path]) -> None:
    assert read_header(gguf_file(version=2)).version == 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"GGML" + data[4:], r"not a GGUF file \(magic b'GGML'"),
        (lambda data: data[:4] + struct.pack("<I", 1) + data[8:], "unsupported GGUF version 1"),
        (lambda data: data[:4] + struct.pack("<I", 4) + data[8:], "unsupported GGUF version 4"),
        (lambda data: b"", "truncated GGUF header"),
        (lambda data: data[:3], "truncated GGUF header"),
        (lambda data: data[:200], "truncated GGUF header"),
        (lambda data: data[:-1], "truncated GGUF file: tensors end at byte"),
    ],
    ids=["magic", "version-1", "version-4", "empty", "in-magic", "in-metadata", "in-tensors"],
)
def test_bad_files_are_rejected_with_one_line_naming_the_file(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    good = write_gguf(tmp_path / "good.gguf").read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage(good))

    with pytest.raises(GgufError, match=message) as caught:
        read_header(bad)

    assert isinstance(caught.value, ModelSyncError)
    assert str(caught.value).startswith(f"{bad}: ")
    assert "\n" not in str(caught.value)


def test_missing_file_is_a_gguf_error(tmp_path: Path) -> None:
    with pytest.raises(GgufError, match="cannot read"):
        read_header(tmp_path / "nope.gguf")


def test_header_of_sparse_file_over_5_gb_reads_only_the_header(tmp_path: Path) -> None:
    big = write_gguf(tmp_path / "big.gguf", GgufSpec(tensor_bytes=(5 << 30) + 4096), sparse=True)

    header = read_header(big)

    assert big.stat().st_size > 5 << 30
    assert header.data_end == big.stat().st_size


def test_agrees_with_the_gguf_package_writer(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf", reason="gguf package not installed: cross-check skipped")
    numpy = pytest.importorskip("numpy")
    path = tmp_path / "ref.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(32768)
    writer.add_block_count(24)
    writer.add_embedding_length(896)
    writer.add_head_count(14)
    writer.add_head_count_kv(2)
    writer.add_file_type(15)
    writer.add_token_list([f"tok{i}" for i in range(5000)])
    writer.add_token_scores([0.0] * 5000)
    writer.add_tensor("w", numpy.ones((16, 32), dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    header = read_header(path)

    assert (header.architecture, header.context_length, header.block_count) == ("qwen2", 32768, 24)
    assert (header.head_count, header.head_count_kv, header.key_length) == (14, 2, 64)
    assert (header.vocab_size, header.file_type, header.tensor_count) == (5000, "Q4_K_M", 1)


def test_real_gemma3_q4_k_m_header(gemma_path: Path) -> None:
    header = read_header(gemma_path).to_json()

    assert header["architecture"] == "gemma3"
    assert header["blockCount"] == 18
    assert header["headCountKv"] == 1
    assert (header["keyLength"], header["valueLength"]) == (256, 256)
    assert header["contextLength"] == 32768
    assert header["vocabSize"] == 262144
    assert header["fileType"] == "Q4_K_M"
    assert hashlib.sha256(gemma_path.read_bytes()).hexdigest() == GEMMA_SHA256


def test_per_layer_kv_heads_are_read_as_an_array(tmp_path: Path) -> None:
    """LFM2 declares head_count_kv per layer, 0 on convolution layers (../shared/cases/c08)."""
    heads = [0, 0, 8, 0, 8, 0]
    header = read_header(write_reference(tmp_path / "h.gguf", "lfm2", head_count_kv=heads))

    assert header.head_count_kv_per_layer == tuple(heads)
    assert header.head_count_kv == 8
    assert header.to_json()["headCountKv"] == heads


def test_a_uniform_kv_head_array_prints_as_one_count(tmp_path: Path) -> None:
    header = read_header(write_reference(tmp_path / "u.gguf", "llama", head_count_kv=[2] * 6))
    assert header.to_json()["headCountKv"] == 2


@pytest.mark.parametrize(
    ("arch", "extra", "expected"),
    [
        ("gemma3", {}, [True] * 5 + [False]),  # the pinned build's gemma3 default: every 6th
        ("gemma2", {}, [True, False] * 3),
        ("llama", {"pattern": 3}, [True, True, False] * 2),  # n_pattern in the file
        ("llama", {"pattern": [False, True] * 3}, [False, True] * 3),  # per layer in the file
        ("somearch", {}, None),  # no known pattern: sized as if every layer were full
    ],
    ids=["gemma3-default", "gemma2-default", "file-scalar", "file-array", "unknown-arch"],
)
def test_sliding_window_layers(
    tmp_path: Path, arch: str, extra: dict[str, Any], expected: list[bool] | None
) -> None:
    path = write_reference(tmp_path / "s.gguf", arch, sliding_window=512, **extra)
    block = read_header(path).to_json()

    assert block["slidingWindow"] == 512
    assert block.get("slidingWindowPattern") == expected


def test_no_window_no_pattern(tmp_path: Path) -> None:
    header = read_header(write_reference(tmp_path / "n.gguf", "gemma3"))
    assert header.sliding_window_layers is None
    assert "slidingWindowPattern" not in header.to_json()


def test_split_shards_are_refused_with_one_line(tmp_path: Path) -> None:
    """../shared/cases/c01: shard 1 alone is not the model; later shards have no metadata."""
    first = write_reference(tmp_path / "m-00001-of-00003.gguf", "llama", split=(0, 3, 9))

    assert read_header(first).split == SplitInfo(number=0, count=3, tensor_count=9)
    with pytest.raises(GgufError, match=r"incomplete split model: shard 2 of 3 .* is missing"):
        read_servable_header(first)


def test_a_vision_tower_inside_the_model_gguf_is_refused(tmp_path: Path) -> None:
    """../shared/cases/c03: Ollama's merged blobs carry v.*/mm.* tensors the text loader
    does not create, so llama-server stops with 'wrong number of tensors'."""
    names = ["token_embd.weight", "v.blk.0.attn_q.weight", "mm.input_projection.weight"]
    path = write_reference(tmp_path / "merged.gguf", "gemma3", tensors=names)

    assert read_header(path).vision_tensors == tuple(names[1:])
    with pytest.raises(GgufError, match=r"2 v\.\*/mm\.\* tensors.*text-only GGUF") as caught:
        read_servable_header(path)
    assert "\n" not in str(caught.value)


def test_a_text_only_model_is_servable(tmp_path: Path) -> None:
    path = write_reference(tmp_path / "t.gguf", "gemma3", chat_template="{{ messages }}")
    header = read_servable_header(path)
    assert header.has_chat_template and not header.vision_tensors and header.split is None


def test_a_big_endian_file_is_named_as_such(tmp_path: Path) -> None:
    good = write_gguf(tmp_path / "good.gguf").read_bytes()
    swapped = tmp_path / "be.gguf"
    swapped.write_bytes(good[:4] + struct.pack(">I", 3) + good[8:])

    with pytest.raises(GgufError, match="big-endian GGUF"):
        read_header(swapped)
