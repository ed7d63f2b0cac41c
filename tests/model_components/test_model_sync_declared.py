"""ModelSync under Pulumi's mock monitor: what reaches the engine (and so the state)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.mocks import MockResourceArgs
from pulumi.runtime.rpc import is_rpc_secret

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.components import model_sync
from llamafleet.components.model_sources import RequestError
from llamafleet.components.model_sync import ModelSync, ModelSyncArgs
from llamafleet.components.model_sync_provider import ModelSyncProvider

from .conftest import ACCESS_KEY, SECRET_KEY, write_gguf

DIGEST = "sha256:" + "ab" * 32
MANIFEST = {"tiny": {"digest": DIGEST, "sizeBytes": 4448, "key": "m/sha256/ab.gguf", "gguf": {}}}


def declare(args: ModelSyncArgs, preview: bool = True) -> list[Declared]:
    return run_program(lambda: ModelSync("sync", args), "test", {}, preview=preview)


def contains_secret(value: Any) -> bool:
    if is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())  # type: ignore[union-attr]
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)  # type: ignore[union-attr]
    return False


@pytest.fixture
def args(tmp_path: Path) -> ModelSyncArgs:
    write_gguf(tmp_path / "tiny.gguf")
    return ModelSyncArgs(
        store_url="s3://llamafleet-models/models",
        models={"tiny": "tiny.gguf"},
        source_dir=str(tmp_path),
        endpoint_url="https://s3.lab:9000",
        region="eu-west-1",
    )


def test_one_dynamic_resource_named_and_parented_after_the_component(
    args: ModelSyncArgs,
) -> None:
    component, resource = declare(args)
    assert component.type == "llamafleet:models:ModelSync"
    assert resource.type == "pulumi-python:dynamic/models:ModelManifest"
    assert resource.name == "sync-manifest"
    assert resource.parent == component.urn


def test_inputs_are_plain_data_without_secrets_or_credentials(args: ModelSyncArgs) -> None:
    resource = declare(args)[-1]
    provider_blob = resource.inputs.pop("__provider")
    assert not contains_secret(provider_blob)
    assert not contains_secret(resource.inputs)
    assert resource.inputs == {
        "storeUrl": "s3://llamafleet-models/models",
        "models": {"tiny": "tiny.gguf"},
        "sourceDir": args.source_dir,
        "endpointUrl": "https://s3.lab:9000",
        "region": "eu-west-1",
    }
    pickled = base64.b64decode(provider_blob)
    assert ModelSyncProvider.__name__.encode() in pickled
    for text in (json.dumps(resource.inputs).encode(), pickled):
        assert ACCESS_KEY.encode() not in text
        assert SECRET_KEY.encode() not in text


def test_digests_output_follows_the_manifest(args: ModelSyncArgs) -> None:
    seen: dict[str, Any] = {}

    def program() -> None:
        ModelSync("sync", args).digests.apply(seen.update)

    def manifest(mock: MockResourceArgs) -> dict[str, Any]:
        return {"manifest": MANIFEST, "absent": []} if mock.typ.endswith(":ModelManifest") else {}

    run_program(program, "test", {}, preview=False, computed=manifest)
    assert seen == {"tiny": DIGEST}


def test_absent_source_is_reported_at_declaration(
    args: ModelSyncArgs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said: list[str] = []
    monkeypatch.setattr(model_sync.pulumi.log, "warn", lambda msg, **_: said.append(msg))
    declare(args)
    assert said == []

    (tmp_path / "tiny.gguf").unlink()
    declare(args)
    (message,) = said
    assert "tiny" in message
    assert "no such file on this machine" in message
    assert "nothing is uploaded or deleted" in message


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"models": {}}, "at least one model"),
        ({"models": {"a": "a.gguf"}}, "relative: set sourceDir"),
        ({"endpoint_url": "https://key:secret@s3.lab"}, "must not carry credentials"),
        ({"ollama_models": "~/.ollama/models"}, "absolute path"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], reason: str) -> None:
    base: dict[str, Any] = {"store_url": "s3://b/p", "models": {"a": "/m/a.gguf"}}
    with pytest.raises(RequestError, match=reason):
        ModelSyncArgs(**(base | kwargs))
