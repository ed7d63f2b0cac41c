"""A model's LoRA adapters and vision projector are part of the model: checked as the pinned
llama-server loads them, synced under the model's one manifest entry, inspected, fetched and
verified with it; given alone or for the wrong model, refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.reference_gguf import write_adapter, write_projector, write_reference, write_set
from test_modelsync_cli import run

from llamafleet.modelsync.digest import format_digest, hash_file
from llamafleet.modelsync.errors import DigestMismatchError, GgufError, SourceError, StoreError
from llamafleet.modelsync.fetch import fetch_model
from llamafleet.modelsync.gguf import read_raw
from llamafleet.modelsync.manifest import FileEntry, ModelEntry
from llamafleet.modelsync.parts import ModelParts, check_part, role_of, with_parts
from llamafleet.modelsync.servable import read_servable_header
from llamafleet.modelsync.sources import ModelSource
from llamafleet.modelsync.splits import with_split_shards
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.verify import verify_remote

pytestmark = pytest.mark.s3


def _model_with_parts(folder: Path) -> tuple[Path, Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    model = write_reference(folder / "chat.gguf", "llama")
    first = write_adapter(folder / "tone.gguf", "llama")
    second = write_adapter(folder / "style.gguf", "llama", {"blk.1.attn_q.weight.lora_a": (4, 32)})
    projector = write_projector(folder / "mmproj.gguf")
    return model, first, second, projector


def _sync_argv(store: RemoteStore, endpoint: str, *args: str) -> list[str]:
    return ["sync", *args, store.location.url, "--endpoint-url", endpoint, "--json"]


# --- what the pinned llama-server would refuse ------------------------------------------------


def test_role_of_tells_adapters_and_projectors_from_models(tmp_path: Path) -> None:
    model, adapter, _, projector = _model_with_parts(tmp_path)

    assert [role_of(read_raw(path).metadata) for path in (model, adapter, projector)] == [
        None,
        "adapter",
        "projector",
    ]


@pytest.mark.parametrize(
    ("write", "role", "message"),
    [
        (
            lambda p: write_reference(p, "llama"),
            "adapter",
            "general.type is None, not 'adapter': not a LoRA adapter",
        ),
        (
            lambda p: write_adapter(p, "llama", adapter_type="control_vector"),
            "adapter",
            "adapter.type is 'control_vector'; llama-server loads only 'lora' adapters",
        ),
        (
            lambda p: write_adapter(p, "gemma3"),
            "adapter",
            "an adapter for 'gemma3', the model is 'llama' .*arch mismatch",
        ),
        (
            lambda p: write_reference(p, "llama"),
            "projector",
            "architecture 'llama', not 'clip': not a projector",
        ),
        (
            lambda p: write_projector(p, vision=False),
            "projector",
            "a clip file with neither a vision nor an audio encoder",
        ),
    ],
    ids=["model-as-adapter", "not-lora", "other-arch", "model-as-projector", "no-encoder"],
)
def test_a_part_llama_server_would_refuse_is_refused_in_one_line(
    tmp_path: Path, write: object, role: str, message: str
) -> None:
    path = write(tmp_path / "part.gguf")  # type: ignore[operator]

    with pytest.raises(GgufError, match=f"part.gguf: cannot be the model's {role}: {message}") as e:
        check_part(path, role, "llama")  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_an_adapter_or_projector_given_as_a_model_is_refused_naming_the_option(
    tmp_path: Path,
) -> None:
    _, adapter, _, projector = _model_with_parts(tmp_path)

    with pytest.raises(GgufError, match=r"a LoRA adapter, not a model: .*--adapter"):
        read_servable_header(adapter)
    with pytest.raises(GgufError, match=r"projector \(mmproj\), not a model: .*--projector"):
        read_servable_header(projector)


def test_parts_follow_their_model_after_its_shards(tmp_path: Path) -> None:
    shards = write_set(tmp_path / "big", prefix="big")
    adapter = write_adapter(tmp_path / "a.gguf", "llama")
    projector = write_projector(tmp_path / "p.gguf")
    plain = write_reference(tmp_path / "plain.gguf", "llama")
    sources = with_split_shards([ModelSource("big", shards[0]), ModelSource("plain", plain)], False)

    expanded = with_parts(sources, {"big": ModelParts((adapter,), projector)})

    assert [(s.name, s.member_of, s.role) for s in expanded] == [
        ("big", None, "shard"),
        ("big#2", "big", "shard"),
        ("big#3", "big", "shard"),
        ("big#adapter1", "big", "adapter"),
        ("big#projector", "big", "projector"),
        ("plain", None, "shard"),
    ]


def test_parts_for_no_model_are_refused(tmp_path: Path) -> None:
    model, adapter, _, _ = _model_with_parts(tmp_path)

    with pytest.raises(SourceError, match="adapters or projector given for no model: other"):
        with_parts([ModelSource("chat", model)], {"other": ModelParts((adapter,))})


# --- the manifest entry -------------------------------------------------------------------


def test_an_entry_with_parts_round_trips_and_names_every_file() -> None:
    def file(char: str, size: int) -> FileEntry:
        return FileEntry(f"sha256:{char * 64}", size, f"m/sha256/{char * 64}.gguf")

    entry = ModelEntry(
        "sha256:" + "a" * 64,
        10,
        "m/sha256/" + "a" * 64 + ".gguf",
        {},
        {},
        adapters=(file("b", 2), file("c", 3)),
        projector=file("d", 4),
    )

    assert ModelEntry.from_json("m", json.loads(json.dumps(entry.to_json()))) == entry
    assert "shards" not in entry.to_json()
    assert [name for name, _ in entry.named_files("m")] == [
        "m#adapter1",
        "m#adapter2",
        "m#projector",
    ]
    assert entry.digests == ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def test_an_entry_from_state_accepts_whole_float_sizes_only() -> None:
    data: dict[str, object] = {"digest": "sha256:" + "a" * 64, "key": "k", "sizeBytes": 10.0}

    assert ModelEntry.from_json("m", data).size_bytes == 10
    with pytest.raises(StoreError, match="lacks digest, sizeBytes or key"):
        ModelEntry.from_json("m", data | {"sizeBytes": 10.5})
    with pytest.raises(StoreError, match="a file lacks digest, sizeBytes or key"):
        ModelEntry.from_json("m", data | {"projector": {"digest": data["digest"], "key": "k"}})


# --- sync, inspect, verify, fetch ---------------------------------------------------------


def test_sync_stores_the_parts_in_the_model_entry(
    tmp_path: Path, store: RemoteStore, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, first, second, projector = _model_with_parts(tmp_path / "m")
    parts = ["--adapter", str(first), "--adapter", str(second), "--projector", str(projector)]

    code, out, err = run(_sync_argv(store, endpoint, str(model), *parts), capsys)

    assert code == 0, err
    result = json.loads(out)
    assert result["uploaded"] == ["chat"]
    digests = [format_digest(hash_file(path)) for path in (first, second, projector)]
    assert [a["digest"] for a in result["models"]["chat"]["adapters"]] == digests[:2]
    assert result["models"]["chat"]["projector"]["digest"] == digests[2]
    entry = store.read_manifest().models["chat"]
    assert [a.digest for a in entry.adapters] == digests[:2]
    assert entry.projector is not None and entry.projector.digest == digests[2]
    assert list(store.read_manifest().models) == ["chat"]
    assert len(store.list_objects()) == 4

    code, out, _ = run(_sync_argv(store, endpoint, str(model), *parts), capsys)
    assert json.loads(out)["unchanged"] == ["chat"]
    code, out, _ = run(_sync_argv(store, endpoint, str(model), "--adapter", str(first)), capsys)
    assert json.loads(out)["recorded"] == ["chat"]  # same objects, fewer files in the entry
    assert store.read_manifest().models["chat"].projector is None
    code, out, _ = run(_sync_argv(store, endpoint, str(model)), capsys)
    assert json.loads(out)["recorded"] == ["chat"]  # the model alone now
    assert store.read_manifest().models["chat"].files == (
        FileEntry(
            digests_of(model), model.stat().st_size, store.location.object_key(hash_file(model))
        ),
    )


def digests_of(path: Path) -> str:
    return format_digest(hash_file(path))


def test_a_part_hashed_with_its_model_is_still_refused_as_a_model_of_its_own(
    tmp_path: Path, store: RemoteStore, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, adapter, _, projector = _model_with_parts(tmp_path / "m")
    parts = ["--adapter", str(adapter), "--projector", str(projector)]
    assert run(_sync_argv(store, endpoint, str(model), *parts), capsys)[0] == 0  # now cached

    for part in (adapter, projector):
        code, _, err = run(_sync_argv(store, endpoint, str(part)), capsys)
        assert code == 1
        assert "not a model: sync it with its model" in err
    assert list(store.read_manifest().models) == ["chat"]


def test_the_same_adapter_twice_is_refused(tmp_path: Path) -> None:
    model, adapter, _, _ = _model_with_parts(tmp_path)

    with pytest.raises(SourceError, match=r"tone\.gguf given twice; llama-server would apply it"):
        with_parts([ModelSource("chat", model)], {"chat": ModelParts((adapter, adapter))})


def test_a_folder_holding_the_model_and_its_parts_syncs_with_them_named(
    tmp_path: Path, store: RemoteStore, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, adapter, _, projector = _model_with_parts(tmp_path / "m")
    (tmp_path / "m" / "style.gguf").unlink()
    parts = ["--adapter", str(adapter), "--projector", str(projector)]

    code, out, err = run(_sync_argv(store, endpoint, str(tmp_path / "m"), *parts), capsys)

    assert code == 0, err
    assert json.loads(out)["uploaded"] == [model.stem]


@pytest.mark.parametrize(
    ("models", "adapter_in_folder", "message"),
    [
        (["a", "b"], False, "--adapter and --projector belong to one model"),
        (["chat"], True, "tone.gguf: a LoRA adapter, not a model"),
    ],
    ids=["parts-for-a-folder-of-models", "an-adapter-alone-in-a-folder"],
)
def test_sync_refuses_parts_without_their_one_model_in_one_line(
    tmp_path: Path,
    store: RemoteStore,
    endpoint: str,
    capsys: pytest.CaptureFixture[str],
    *,
    models: list[str],
    adapter_in_folder: bool,
    message: str,
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in models:
        write_reference(folder / f"{name}.gguf", "llama")
    adapter = write_adapter((folder if adapter_in_folder else tmp_path) / "tone.gguf", "llama")
    parts = [] if adapter_in_folder else ["--adapter", str(adapter)]

    code, _, err = run(_sync_argv(store, endpoint, str(folder), *parts), capsys)

    assert code == 1
    assert err.count("\n") == 1
    assert message in err
    assert store.read_manifest().models == {}


def test_inspect_pins_a_part_by_digest_and_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = write_adapter(tmp_path / "tone.gguf", "llama")

    code, out, _ = run(["inspect", "--digest", "--json", str(adapter)], capsys)

    assert code == 0
    assert json.loads(out) == {
        "role": "adapter",
        "architecture": "llama",
        "digest": format_digest(hash_file(adapter)),
        "sizeBytes": adapter.stat().st_size,
    }


def test_inspect_refuses_a_part_llama_server_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = write_adapter(tmp_path / "tone.gguf", "llama", adapter_type="control_vector")

    code, out, err = run(["inspect", "--json", str(adapter)], capsys)

    assert (code, out) == (1, "")
    assert "cannot be the model's adapter: adapter.type is 'control_vector'" in err


def test_verify_and_fetch_cover_every_part(
    tmp_path: Path, store: RemoteStore, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, first, _, projector = _model_with_parts(tmp_path / "m")
    parts = ["--adapter", str(first), "--projector", str(projector)]
    assert run(_sync_argv(store, endpoint, str(model), *parts), capsys)[0] == 0
    hexes = [hash_file(path) for path in (model, first, projector)]

    argv = ["fetch", "--store", store.location.url, "--endpoint-url", endpoint, "--json"]
    argv += ["--digest", format_digest(hexes[0]), "--cache-dir", str(tmp_path / "cache")]
    argv += [arg for h in hexes[1:] for arg in ("--file", format_digest(h))]
    code, out, err = run(argv, capsys)

    assert code == 0, err
    files = json.loads(out)["files"]
    assert [Path(f["path"]).name for f in files] == [f"{h}.gguf" for h in hexes[1:]]
    assert Path(files[0]["path"]).read_bytes() == first.read_bytes()

    key = store.location.object_key(hexes[2])
    store.client.put_object(Bucket=store.location.bucket, Key=key, Body=b"x" * 40)
    results = verify_remote(store)
    assert [(r.name, r.ok) for r in results] == [
        ("chat", True),
        ("chat#adapter1", True),
        ("chat#projector", False),
    ]
    with pytest.raises(DigestMismatchError, match="nothing kept"):
        fetch_model(store, hexes[2], tmp_path / "fresh")
