"""State written before the `llamafleet` package names dynamic providers by their old module
paths; the engine driver rewrites them (llamafleet.command.state_moves). The old pickles are made
here the way Pulumi made them: an importable class under the old path, serialized by the SDK."""

from __future__ import annotations

import base64
import sys
import types
from collections.abc import Iterator

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from llamafleet.command.state_moves import move_providers, moved_module
from llamafleet.components.api_keys import ApiKeyProvider
from llamafleet.components.model_sync_provider import ModelSyncProvider


@pytest.fixture
def old_layout() -> Iterator[dict[str, str]]:
    """Serialized providers as the tree before pickled them (`components.<module>.<Class>`);
    the old modules are gone again when the test runs."""
    made: dict[str, str] = {}
    added = ["components"]
    package = sys.modules["components"] = types.ModuleType("components")
    try:
        for cls in (ApiKeyProvider, ModelSyncProvider):
            old_module = cls.__module__.removeprefix("llamafleet.")
            module = types.ModuleType(old_module)
            old_class = type(cls.__name__, (cls,), {"__module__": old_module})
            setattr(module, cls.__name__, old_class)
            setattr(package, old_module.split(".")[1], module)
            sys.modules[old_module] = module
            added.append(old_module)
            made[cls.__name__] = serialize_provider(old_class())
    finally:
        # Only what was added here goes: clearing sys.modules would re-import Pulumi's runtime
        # as a second copy, and later mocked runs in this process would wait forever.
        for name in added:
            sys.modules.pop(name, None)
    yield made


# As ApiKey and ModelManifest declare themselves (`module=`, `name=`), and the SDK default.
API_KEY_TYPE = "pulumi-python:dynamic/tenancy:ApiKey"
MANIFEST_TYPE = "pulumi-python:dynamic/models:ModelManifest"


def resource(provider: str, kind: str) -> dict[str, object]:
    return {
        "urn": f"urn:pulumi:s::p::{kind}::r",
        "type": kind,
        "inputs": {"__provider": provider, "name": "first"},
        "outputs": {"__provider": provider, "value": "x"},
    }


def test_the_old_pickles_name_the_old_paths(old_layout: dict[str, str]) -> None:
    """The control: the fixture's pickles really point at `components.*`, which no longer
    imports."""
    raw = base64.b64decode(old_layout["ApiKeyProvider"])
    assert b"components.api_keys" in raw and b"llamafleet" not in raw
    with pytest.raises(ModuleNotFoundError):
        __import__("components.api_keys")


def test_old_providers_move_to_the_new_paths_and_load(old_layout: dict[str, str]) -> None:
    deployment = {
        "manifest": {},
        "resources": [
            resource(old_layout["ApiKeyProvider"], API_KEY_TYPE),
            resource(old_layout["ModelSyncProvider"], MANIFEST_TYPE),
            resource(old_layout["ApiKeyProvider"], "pulumi-python:dynamic:Resource"),
        ],
    }
    moved, count = move_providers(deployment)
    assert count == 3
    for before, after in zip(deployment["resources"], moved["resources"], strict=True):
        assert (
            before["inputs"]["__provider"] != after["inputs"]["__provider"]
        )  # not changed in place
        for section in ("inputs", "outputs"):
            assert b"llamafleet.components." in base64.b64decode(after[section]["__provider"])
            assert {k: v for k, v in after[section].items() if k != "__provider"} == {
                k: v for k, v in before[section].items() if k != "__provider"
            }
    # Exactly what the program serializes today, so the next `up` sees no change.
    assert moved["resources"][0]["inputs"]["__provider"] == serialize_provider(ApiKeyProvider())


def test_current_providers_and_other_resources_are_left_alone() -> None:
    current = serialize_provider(ApiKeyProvider())
    deployment = {
        "resources": [
            resource(current, API_KEY_TYPE),
            resource("not-a-pickle", kind="kubernetes:core/v1:Namespace"),
        ]
    }
    moved, count = move_providers(deployment)
    assert count == 0
    assert moved == deployment


def test_an_empty_deployment_moves_nothing() -> None:
    assert move_providers({}) == ({}, 0)


@pytest.mark.parametrize(
    ("module", "new"),
    [
        ("components.api_keys", "llamafleet.components.api_keys"),
        ("modelsync.store", "llamafleet.modelsync.store"),
        ("components", "llamafleet.components"),
        ("llamafleet.components.api_keys", None),
        ("componentsx.api_keys", None),
        ("builtins", None),
    ],
)
def test_only_the_moved_packages_are_mapped(module: str, new: str | None) -> None:
    assert moved_module(module) == new
