"""The engine's binaries and the Python wheels the program runs with agree: each side is asked
for its own version (the binaries by running them, the wheels by their installed metadata)."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

pytestmark = pytest.mark.e2e


def run(argv: list[str]) -> str:
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout


def test_the_cli_is_not_older_than_the_pulumi_sdk(engine_bin: Path) -> None:
    cli = Version(run([str(engine_bin / "pulumi"), "version"]).strip().removeprefix("v"))
    sdk = Version(version("pulumi"))
    # CLI >= SDK is the supported direction (the SDK's features need a CLI that knows them).
    assert cli >= sdk, f"pulumi CLI {cli} is older than the pulumi SDK {sdk}"


def test_the_kubernetes_provider_is_the_release_of_the_wheel(engine_bin: Path) -> None:
    provider = engine_bin / "pulumi-resource-kubernetes"
    # The provider reports its version in its schema (GetSchema), read through the CLI.
    schema = json.loads(run([str(engine_bin / "pulumi"), "package", "get-schema", str(provider)]))
    assert schema["name"] == "kubernetes"
    assert schema["version"] == version("pulumi_kubernetes")
