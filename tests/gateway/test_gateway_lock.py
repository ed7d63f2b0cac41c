"""The gateway's environment is pinned exactly, with hashes, and installs from the lock alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "gateway" / "requirements.lock"
SOURCE = REPO / "gateway" / "requirements.in"
# LiteLLM releases published by an attacker (PyPI supply-chain compromise): never pinned.
COMPROMISED = {"1.82.7", "1.82.8"}


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from the lock."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    found: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s+(.*)$", line)
        assert match, f"not an exact pin with hashes: {line[:80]}"
        found[match.group(1).lower()] = (match.group(2), re.findall(r"--hash=sha256:(\w+)", line))
    return found


def test_every_package_is_pinned_exactly_with_hashes() -> None:
    packages = locked()
    assert len(packages) > 50
    assert all(len(hashes) >= 1 for _, hashes in packages.values())
    assert all(len(h) == 64 for _, hashes in packages.values() for h in hashes)


def test_litellm_is_the_pinned_release_and_not_a_compromised_one() -> None:
    version = locked()["litellm"][0]
    assert f"litellm[proxy]=={version}" in SOURCE.read_text()
    assert version not in COMPROMISED
    for name in ("redis", "prometheus-client"):
        assert f"{name}=={locked()[name][0]}" in SOURCE.read_text()


@pytest.mark.image
def test_the_lock_installs_with_require_hashes_into_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(
        [str(REPO / "scripts" / "gateway-venv"), "--fresh", str(venv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The plugin imports in it, as the image runs it (the checkout on PYTHONPATH).
    (tmp_path / "routes.json").write_text(json.dumps({"format": 1, "teams": {}}))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LLAMAFLEET_GATEWAY_ROUTES": str(tmp_path / "routes.json"),
        "LLAMAFLEET_GATEWAY_KEYS": str(tmp_path / "keys.json"),
        "LLAMAFLEET_GATEWAY_METRICS_PORT": "0",
    }
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import litellm, llamafleet_gateway.litellm_plugin as p; print(p.OPENAI_ROUTES)",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert "/v1/chat/completions" in probe.stdout
