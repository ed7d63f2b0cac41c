"""Split models (llama-gguf-split's shards): a set is complete, in order and unmixed, or one line
says which shard is wrong (../shared/cases/c01)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.reference_gguf import write_reference, write_set

from llamafleet.modelsync.errors import GgufError
from llamafleet.modelsync.servable import read_servable_header
from llamafleet.modelsync.splits import shard_set, split_name


def test_names_are_llama_cpps() -> None:
    assert split_name("model", 1, 3) == "model-00002-of-00003.gguf"


def test_a_complete_set_is_found_in_order(tmp_path: Path) -> None:
    shards = write_set(tmp_path)

    found = shard_set(shards[0])

    assert found.shards == tuple(shards)
    assert found.size_bytes == sum(path.stat().st_size for path in shards)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda shards: shards[1].unlink(), r"incomplete split model: shard 2 of 3 .* is missing"),
        (
            lambda shards: write_reference(
                shards[2], "llama", split=(2, 4, 3), tensors=["blk.2.weight"]
            ),
            r"mixed split model: named shard 3 of 3 but says shard 3 of 4",
        ),
        (
            lambda shards: write_reference(shards[1], "llama", tensors=["x"]),
            "mixed split model: named shard 2 of 3 but says no split keys",
        ),
    ],
    ids=["missing", "other-count", "not-a-shard"],
)
def test_an_incomplete_or_mixed_set_is_one_line(
    tmp_path: Path, damage: object, message: str
) -> None:
    shards = write_set(tmp_path)
    damage(shards)  # type: ignore[operator]

    with pytest.raises(GgufError, match=message) as caught:
        shard_set(shards[0])
    assert "\n" not in str(caught.value)


def test_tensors_that_do_not_add_up_are_a_mixed_set(tmp_path: Path) -> None:
    shards = write_set(tmp_path, declared=5)
    with pytest.raises(GgufError, match="its shards hold 3 tensors, the set declares 5"):
        shard_set(shards[0])


def test_a_later_shard_or_a_renamed_first_is_refused(tmp_path: Path) -> None:
    shards = write_set(tmp_path)
    with pytest.raises(GgufError, match="shard 2 of 3: give the first shard"):
        shard_set(shards[1])
    renamed = shards[0].rename(tmp_path / "model.gguf")
    with pytest.raises(GgufError, match=r"must be named <prefix>-00001-of-00003\.gguf"):
        shard_set(renamed)


def test_shard_1_of_a_complete_set_is_servable_and_no_other_shard_is(tmp_path: Path) -> None:
    """llama-server loads a split model from its first shard, the others beside it."""
    shards = write_set(tmp_path)
    assert read_servable_header(shards[0]).split is not None
    with pytest.raises(GgufError, match=r"shard 2 of 3 of a split model: .*give that one"):
        read_servable_header(shards[1])
    shards[2].unlink()
    with pytest.raises(GgufError, match=r"incomplete split model: shard 3 of 3"):
        read_servable_header(shards[0])
