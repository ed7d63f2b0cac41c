"""Read a GGUF file's header: the metadata that sizing needs, without reading tensor data.

Metadata arrays are counted and skipped, never decoded: a real vocabulary holds 262k strings.
The tensor table is read so that a file cut short (an interrupted download) is rejected:
the end of the last tensor must lie inside the file.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Final

from llamafleet.modelsync.errors import GgufError
from llamafleet.modelsync.ggml_types import TENSOR_BLOCK_LAYOUT, file_type_name
from llamafleet.modelsync.llama_cpp_facts import default_sliding_window_layers, pattern_layers

GGUF_MAGIC: Final = b"GGUF"
SUPPORTED_VERSIONS: Final = (2, 3)
DEFAULT_ALIGNMENT: Final = 32

_READ_CHUNK: Final = 1 << 16
# Arrays this short are decoded when wanted (per-layer head counts); longer ones only counted.
_MAX_DECODED_ARRAY: Final = 4096
# Metadata arrays sizing reads per layer (`%s.attention.head_count_kv` is an int32 array on
# hybrid models such as LFM2, `%s.attention.sliding_window_pattern` a bool array on some).
_DECODED_ARRAY_SUFFIXES: Final = (
    ".attention.head_count",
    ".attention.head_count_kv",
    ".attention.sliding_window_pattern",
)
# Tensors of a vision tower or its projector (clip.cpp's names, as Ollama's merged blobs carry
# them inside the text model's GGUF).
_VISION_TENSOR_PREFIXES: Final = ("v.", "mm.")

_T_UINT8, _T_INT8, _T_UINT16, _T_INT16, _T_UINT32, _T_INT32, _T_FLOAT32 = range(7)
_T_BOOL, _T_STRING, _T_ARRAY, _T_UINT64, _T_INT64, _T_FLOAT64 = range(7, 13)

_SCALAR_FORMATS: Final[dict[int, str]] = {
    _T_UINT8: "<B",
    _T_INT8: "<b",
    _T_UINT16: "<H",
    _T_INT16: "<h",
    _T_UINT32: "<I",
    _T_INT32: "<i",
    _T_FLOAT32: "<f",
    _T_BOOL: "<?",
    _T_UINT64: "<Q",
    _T_INT64: "<q",
    _T_FLOAT64: "<d",
}

MetadataValue = int | float | bool | str | list[int | float | bool]


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array that was skipped: its element type and length only."""

    element_type: int
    count: int


@dataclass(frozen=True)
class SplitInfo:
    """`split.*` keys of a shard written by llama-gguf-split: shard `number` (0-based in the
    file, `split.no`) of `count`, and the tensors of the whole set."""

    number: int
    count: int
    tensor_count: int


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF header says about a model, in the units llama.cpp uses.

    `head_count_kv` is the largest per-layer value; `head_count_kv_per_layer` keeps every layer's
    when the file stores an array (0 on recurrent or convolution layers, which hold no KV).
    `sliding_window_layers` says per layer whether its KV cache is a `sliding_window`-token
    window (llama.cpp's SWA pattern: the file's `sliding_window_pattern`, or the pinned build's
    default for the architecture); None when every layer attends to the whole context.
    """

    version: int
    tensor_count: int
    architecture: str
    name: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    vocab_size: int | None
    file_type: str | None
    sliding_window: int | None
    data_end: int
    head_count_kv_per_layer: tuple[int, ...] | None = None
    sliding_window_layers: tuple[bool, ...] | None = None
    has_chat_template: bool = False
    split: SplitInfo | None = None
    vision_tensors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The camelCase block stack files hold under a model's `gguf:` key."""
        per_layer = self.head_count_kv_per_layer
        uniform = per_layer is None or len(set(per_layer)) <= 1
        block: dict[str, object] = {
            "version": self.version,
            "tensorCount": self.tensor_count,
            "architecture": self.architecture,
            "name": self.name,
            "contextLength": self.context_length,
            "blockCount": self.block_count,
            "embeddingLength": self.embedding_length,
            "headCount": self.head_count,
            "headCountKv": self.head_count_kv if uniform else list(per_layer or ()),
            "keyLength": self.key_length,
            "valueLength": self.value_length,
            "vocabSize": self.vocab_size,
            "fileType": self.file_type,
        }
        if self.sliding_window is not None:
            block["slidingWindow"] = self.sliding_window
        if self.sliding_window_layers is not None:
            block["slidingWindowPattern"] = list(self.sliding_window_layers)
        if self.split is not None:
            block["splitCount"] = self.split.count
        return block


class _Cursor:
    """Sequential little-endian reads over a file, buffered, with cheap forward skips."""

    def __init__(self, stream: BinaryIO, path: Path, file_size: int) -> None:
        self._stream = stream
        self._path = path
        self._file_size = file_size
        self._buffer = b""
        self._buffer_start = 0
        self._pos = 0  # offset inside _buffer

    @property
    def path(self) -> Path:
        return self._path

    @property
    def offset(self) -> int:
        return self._buffer_start + self._pos

    def _truncated(self, wanted: int) -> GgufError:
        return GgufError(
            f"{self._path}: truncated GGUF header (needed {wanted} bytes at offset {self.offset},"
            f" file has {self._file_size})"
        )

    def _ensure(self, count: int) -> None:
        available = len(self._buffer) - self._pos
        if available >= count:
            return
        start = self.offset
        self._stream.seek(start)
        self._buffer = self._stream.read(max(count, _READ_CHUNK))
        self._buffer_start = start
        self._pos = 0
        if len(self._buffer) < count:
            raise self._truncated(count)

    def take(self, count: int) -> bytes:
        self._ensure(count)
        chunk = self._buffer[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def unpack(self, fmt: str, size: int) -> int | float | bool:
        self._ensure(size)
        (value,) = struct.unpack_from(fmt, self._buffer, self._pos)
        self._pos += size
        return value

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def skip(self, count: int) -> None:
        target = self.offset + count
        if target > self._file_size:
            raise self._truncated(count)
        if self._pos + count <= len(self._buffer):
            self._pos += count
        else:
            self._buffer, self._buffer_start, self._pos = b"", target, 0

    def string(self) -> str:
        length = self.u64()
        raw = self.take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise GgufError(f"{self._path}: metadata string is not UTF-8: {err}") from err

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            self.skip(self.u64())


def _read_value(cursor: _Cursor, value_type: int, decode_array: bool) -> MetadataValue | ArrayInfo:
    if value_type == _T_STRING:
        return cursor.string()
    if value_type == _T_ARRAY:
        return _read_array(cursor, decode_array)
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is None:
        raise GgufError(f"{cursor.path}: unknown metadata value type {value_type}")
    return cursor.unpack(fmt, struct.calcsize(fmt))


def _read_array(cursor: _Cursor, decode: bool) -> list[int | float | bool] | ArrayInfo:
    element_type = cursor.u32()
    count = cursor.u64()
    fmt = _SCALAR_FORMATS.get(element_type)
    if element_type == _T_STRING:
        cursor.skip_strings(count)
    elif fmt is None:
        raise GgufError(f"{cursor.path}: unsupported metadata array type {element_type}")
    elif decode and count <= _MAX_DECODED_ARRAY:
        size = struct.calcsize(fmt)
        return [cursor.unpack(fmt, size) for _ in range(count)]
    else:
        cursor.skip(count * struct.calcsize(fmt))
    return ArrayInfo(element_type, count)


def _tensor_table(cursor: _Cursor, tensor_count: int, alignment: int) -> tuple[int, list[str]]:
    """(offset just past the last tensor's bytes, names of vision-tower tensors), from the
    tensor table.

    Raises:
        GgufError: a tensor has a ggml type missing from TENSOR_BLOCK_LAYOUT.
    """
    furthest = 0
    vision: list[str] = []
    for _ in range(tensor_count):
        name = cursor.string()
        if name.startswith(_VISION_TENSOR_PREFIXES):
            vision.append(name)
        n_dims = cursor.u32()
        elements = 1
        for _ in range(n_dims):
            elements *= cursor.u64()
        tensor_type = cursor.u32()
        offset = cursor.u64()
        layout = TENSOR_BLOCK_LAYOUT.get(tensor_type)
        if layout is None:
            raise GgufError(f"{cursor.path}: tensor {name!r} has unknown type {tensor_type}")
        block_elements, block_bytes = layout
        furthest = max(furthest, offset + elements // block_elements * block_bytes)
    data_start = -(-cursor.offset // alignment) * alignment
    return data_start + furthest, vision


def _int_or_none(value: MetadataValue | ArrayInfo | None) -> int | None:
    """An integer setting; per-layer arrays (some archs) are summarised by their maximum."""
    if isinstance(value, bool) or value is None or isinstance(value, ArrayInfo | str):
        return None
    if isinstance(value, list):
        numbers = [int(item) for item in value if not isinstance(item, bool)]
        return max(numbers) if numbers else None
    return int(value)


def _str_or_none(value: MetadataValue | ArrayInfo | None) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RawGguf:
    """A GGUF file's header as read, before any model facts are derived: its metadata (arrays
    of per-layer facts decoded, others only counted), tensor count, where its tensor data ends,
    and the names of vision-tower tensors."""

    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, MetadataValue | ArrayInfo]
    data_end: int
    vision_tensors: tuple[str, ...]


def read_raw(path: str | os.PathLike[str]) -> RawGguf:
    """Read and check the GGUF file at `path`, without requiring model metadata (a split
    model's later shards carry only `split.*`).

    Raises:
        GgufError: the file cannot be read, is not a GGUF file of version 2 or 3 (a big-endian
            file is named as such), has a malformed or truncated header, or is shorter than its
            tensor table says.
    """
    file_path = Path(path)
    try:
        with file_path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            return _parse(_Cursor(stream, file_path, size), file_path, size)
    except OSError as err:
        raise GgufError(f"{file_path}: cannot read: {err.strerror or err}") from err


def read_header(path: str | os.PathLike[str]) -> GgufHeader:
    """Read and check the header of the GGUF file at `path`: GgufError (one line) as read_raw
    raises it, or where the header names no architecture."""
    return header_of(read_raw(path))


def header_of(raw: RawGguf) -> GgufHeader:
    """The model facts of a GGUF header read by read_raw: GgufError (one line) where it names
    no architecture."""
    header = _header_from_metadata(
        raw.path, raw.version, raw.tensor_count, raw.metadata, raw.data_end
    )
    return replace(header, vision_tensors=raw.vision_tensors)


def _parse(cursor: _Cursor, path: Path, file_size: int) -> RawGguf:
    magic = cursor.take(4)
    if magic != GGUF_MAGIC:
        raise GgufError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    version = cursor.u32()
    if int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
        raise GgufError(
            f"{path}: big-endian GGUF (byte order not supported: llama.cpp reads only "
            "little-endian files on x86-64 and CUDA hosts); convert it or fetch the "
            "little-endian release"
        )
    if version not in SUPPORTED_VERSIONS:
        raise GgufError(
            f"{path}: unsupported GGUF version {version} (supported: "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    tensor_count = cursor.u64()
    kv_count = cursor.u64()
    metadata: dict[str, MetadataValue | ArrayInfo] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value_type = cursor.u32()
        decode = key.endswith(_DECODED_ARRAY_SUFFIXES)
        metadata[key] = _read_value(cursor, value_type, decode_array=decode)
    alignment = _int_or_none(metadata.get("general.alignment")) or DEFAULT_ALIGNMENT
    data_end, vision = _tensor_table(cursor, tensor_count, alignment)
    if data_end > file_size:
        raise GgufError(
            f"{path}: truncated GGUF file: tensors end at byte {data_end}, file has {file_size}"
        )
    return RawGguf(path, version, tensor_count, metadata, data_end, tuple(vision))


def _per_layer_ints(
    value: MetadataValue | ArrayInfo | None, layers: int | None
) -> tuple[int, ...] | None:
    """A per-layer integer array as llama.cpp reads it (`get_key_or_arr`: one value per layer);
    None when the key is a scalar or absent."""
    if not isinstance(value, list):
        return None
    numbers = tuple(int(item) for item in value if not isinstance(item, bool))
    return numbers if layers is None or len(numbers) == layers else None


def _sliding_window_layers(
    architecture: str,
    pattern: MetadataValue | ArrayInfo | None,
    sliding_window: int | None,
    layers: int | None,
) -> tuple[bool, ...] | None:
    """Which layers use the sliding window: the file's bool array or n_pattern, else the pinned
    build's default for the architecture (llama_model_base::load_swa_pattern)."""
    if not sliding_window or not layers:
        return None
    if isinstance(pattern, list) and len(pattern) == layers:
        return tuple(bool(item) for item in pattern)
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        return pattern_layers(pattern, False, layers)
    return default_sliding_window_layers(architecture, layers)


def split_info(path: Path, metadata: dict[str, MetadataValue | ArrayInfo]) -> SplitInfo | None:
    """The `split.*` keys of a shard (None when the file is not one of several).

    Raises:
        GgufError: the keys are present but inconsistent.
    """
    count = _int_or_none(metadata.get("split.count"))
    if count is None or count <= 1:
        return None
    number = _int_or_none(metadata.get("split.no"))
    tensors = _int_or_none(metadata.get("split.tensors.count"))
    if number is None or tensors is None or not 0 <= number < count:
        raise GgufError(
            f"{path}: malformed split keys (split.no {number}, split.count {count}, "
            f"split.tensors.count {tensors})"
        )
    return SplitInfo(number=number, count=count, tensor_count=tensors)


def _header_from_metadata(
    path: Path,
    version: int,
    tensor_count: int,
    metadata: dict[str, MetadataValue | ArrayInfo],
    data_end: int,
) -> GgufHeader:
    split = split_info(path, metadata)
    architecture = _str_or_none(metadata.get("general.architecture"))
    if not architecture:
        if split is not None and split.number > 0:
            raise GgufError(
                f"{path}: shard {split.number + 1} of {split.count} of a split model: split "
                "models are not supported yet; merge the shards (llama-gguf-split --merge "
                "FIRST-SHARD OUT) and use the merged file"
            )
        raise GgufError(f"{path}: GGUF header has no general.architecture")

    def arch_value(key: str) -> MetadataValue | ArrayInfo | None:
        return metadata.get(f"{architecture}.{key}")

    def arch_int(key: str) -> int | None:
        return _int_or_none(arch_value(key))

    block_count = arch_int("block_count")
    embedding_length = arch_int("embedding_length")
    head_count = arch_int("attention.head_count")
    head_dim = embedding_length // head_count if embedding_length and head_count else None
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab_size = tokens.count if isinstance(tokens, ArrayInfo) else arch_int("vocab_size")
    file_type = _int_or_none(metadata.get("general.file_type"))
    head_count_kv_value = arch_value("attention.head_count_kv")
    head_count_kv = _int_or_none(head_count_kv_value)
    sliding_window = arch_int("attention.sliding_window")
    return GgufHeader(
        version=version,
        tensor_count=tensor_count,
        architecture=architecture,
        name=_str_or_none(metadata.get("general.name")),
        context_length=arch_int("context_length"),
        block_count=block_count,
        embedding_length=embedding_length,
        head_count=head_count,
        head_count_kv=head_count if head_count_kv is None else head_count_kv,
        key_length=arch_int("attention.key_length") or head_dim,
        value_length=arch_int("attention.value_length") or head_dim,
        vocab_size=vocab_size,
        file_type=None if file_type is None else file_type_name(file_type),
        sliding_window=sliding_window,
        data_end=data_end,
        head_count_kv_per_layer=_per_layer_ints(head_count_kv_value, block_count),
        sliding_window_layers=_sliding_window_layers(
            architecture,
            arch_value("attention.sliding_window_pattern"),
            sliding_window,
            block_count,
        ),
        has_chat_template=isinstance(metadata.get("tokenizer.chat_template"), str),
        split=split,
    )
