"""Split models: the shards llama-gguf-split writes, `<prefix>-00001-of-00003.gguf` and on.

llama.cpp loads a split model from its first shard and finds the others beside it by name
(llama_split_path in src/llama.cpp of the pinned build), so a set is complete only when every
shard is there under that name and says it belongs (same `split.count`, its own `split.no`,
tensors adding up to `split.tensors.count`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Final

from llamafleet.modelsync.errors import GgufError
from llamafleet.modelsync.gguf import SplitInfo, read_raw, split_info
from llamafleet.modelsync.sources import ModelSource, member_name

_SPLIT_NAME_RE: Final = re.compile(r"^(?P<prefix>.+)-(?P<number>\d{5})-of-(?P<count>\d{5})\.gguf$")


def split_name(prefix: str, number: int, count: int) -> str:
    """The name llama.cpp looks for: shard `number` (0-based) of `count`, e.g.
    `model-00002-of-00003.gguf` for number 1 (llama_split_path's `%s-%05d-of-%05d.gguf`)."""
    return f"{prefix}-{number + 1:05d}-of-{count:05d}.gguf"


@dataclass(frozen=True)
class ShardSet:
    """A complete split model: its shards in order and what each declares."""

    prefix: str
    shards: tuple[Path, ...]

    @property
    def size_bytes(self) -> int:
        """The bytes of every shard together."""
        return sum(path.stat().st_size for path in self.shards)


def _declared(path: Path) -> tuple[SplitInfo | None, int]:
    raw = read_raw(path)
    return split_info(path, raw.metadata), raw.tensor_count


def shard_set(first: Path) -> ShardSet:
    """The complete set `first` (shard 1, named as llama-gguf-split names it) begins.

    Raises:
        GgufError: `first` is not shard 1 of a split model, is not named `-00001-of-NNNNN.gguf`,
            or the set is incomplete (a shard missing) or mixed (a shard of another set or
            count, or tensors that do not add up); one line each, naming the shard.
    """
    split, tensors = _declared(first)
    if split is None:
        raise GgufError(f"{first}: not a shard of a split model (no split.count above 1)")
    if split.number != 0:
        raise GgufError(
            f"{first}: shard {split.number + 1} of {split.count}: give the first shard, "
            f"{split_name('<prefix>', 0, split.count)}"
        )
    named = _SPLIT_NAME_RE.match(first.name)
    if named is None or named["number"] != "00001" or int(named["count"]) != split.count:
        raise GgufError(
            f"{first}: shard 1 of {split.count} must be named "
            f"{split_name('<prefix>', 0, split.count)}: llama.cpp finds the other shards by "
            "that name"
        )
    prefix = named["prefix"]
    shards = [first]
    total = tensors
    for number in range(1, split.count):
        path = first.parent / split_name(prefix, number, split.count)
        if not path.is_file():
            raise GgufError(
                f"{first}: incomplete split model: shard {number + 1} of {split.count} "
                f"({path.name}) is missing"
            )
        declared, count = _declared(path)
        if declared is None or (declared.number, declared.count) != (number, split.count):
            said = (
                "no split keys"
                if declared is None
                else (f"shard {declared.number + 1} of {declared.count}")
            )
            raise GgufError(
                f"{path}: mixed split model: named shard {number + 1} of "
                f"{split.count} but says {said}"
            )
        shards.append(path)
        total += count
    if total != split.tensor_count:
        raise GgufError(
            f"{first}: mixed split model: its shards hold {total} tensors, the set declares "
            f"{split.tensor_count}"
        )
    return ShardSet(prefix, tuple(shards))


def _first_shard_set(path: Path) -> ShardSet | None:
    """The set `path` begins when it is named and keyed as shard 1 of a split model; None for a
    file that is not (a plain GGUF, even one whose name looks like a shard's). Shard 1 of an
    incomplete or mixed set raises GgufError, as shard_set does.
    """
    named = _SPLIT_NAME_RE.match(path.name)
    if named is None or named["number"] != "00001" or int(named["count"]) < 2:
        return None
    if split_info(path, read_raw(path).metadata) is None:
        return None
    return shard_set(path)


def with_split_shards(sources: list[ModelSource], name_by_prefix: bool) -> list[ModelSource]:
    """`sources`, each first shard of a split model followed by its other shards (sources with
    `member_of` set, named by `member_name`); a shard that is already listed (a folder holds the
    whole set) is folded into its set instead of standing alone. With `name_by_prefix`, a first
    shard named by its file stem is renamed to the set's prefix (`m-00001-of-00003.gguf` is
    model `m`). Reads the shards' headers only. Shard 1 of an incomplete or mixed set raises
    GgufError (one line, naming the shard).
    """
    sets: dict[Path, ShardSet] = {}
    for source in sources:
        found = None if source.member_of is not None else _first_shard_set(source.path)
        if found is not None:
            sets[source.path] = found
    members = {path.resolve() for found in sets.values() for path in found.shards[1:]}
    expanded: list[ModelSource] = []
    for source in sources:
        if source.path.resolve() in members and source.path not in sets:
            continue
        found = sets.get(source.path)
        if found is None:
            expanded.append(source)
            continue
        renamed = name_by_prefix and source.name == source.path.stem
        first = replace(source, name=found.prefix) if renamed else source
        expanded.append(first)
        expanded += [
            ModelSource(
                member_name(first.name, number),
                path,
                {"kind": "file", "path": str(path)},
                member_of=first.name,
            )
            for number, path in enumerate(found.shards[1:], start=1)
        ]
    return expanded


def split_layout(first_hex: str, count: int, number: int = 0) -> PurePosixPath:
    """Where, relative to a fetch cache folder, shard `number` (0-based) of the `count`-shard
    model whose first shard hashes to `first_hex` lies under its split name, beside the others:
    `split/<first_hex>/model-00001-of-00003.gguf` (the prefix is ours; llama.cpp needs only
    the `-NNNNN-of-NNNNN.gguf` names to agree)."""
    return PurePosixPath("split", first_hex, split_name("model", number, count))
