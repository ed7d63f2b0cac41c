"""The llama-server argv exactly as the program renders it for a stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from llama_server import REPO

CONTAINER = "llama-server"


def render(stack: str, out_dir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "llamafleet.command.cli", "render", stack, "--out", str(out_dir)],
        cwd=REPO,
        check=True,
    )
    return out_dir


def _server_container(doc: dict[str, Any]) -> dict[str, Any] | None:
    containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return next((c for c in containers if c.get("name") == CONTAINER), None)


def deployment_argvs(rendered: Path) -> dict[str, list[str]]:
    """command + args of every llama-server container, keyed by the Deployment's file."""
    found: dict[str, list[str]] = {}
    for path in sorted(rendered.glob("*/Deployment-*.yaml")):
        container = _server_container(yaml.safe_load(path.read_text()))
        if container is not None:
            found[str(path.relative_to(rendered))] = [
                *container.get("command", []),
                *container.get("args", []),
            ]
    return found


def rendered_argv(stack: str, out_dir: Path) -> list[str]:
    """The first llama-server Deployment of the stack (sorted by namespace and name)."""
    argvs = deployment_argvs(render(stack, out_dir))
    if not argvs:
        raise AssertionError(f"render {stack} produced no Deployment with a {CONTAINER} container")
    return next(iter(argvs.values()))


def local_pre_stop(out_dir: Path) -> list[str]:
    """The preStop command of the local stack's llama-server container, as rendered."""
    for path in sorted(render("local", out_dir).glob("*/Deployment-*.yaml")):
        container = _server_container(yaml.safe_load(path.read_text()))
        if container is not None:
            return list(container["lifecycle"]["preStop"]["exec"]["command"])
    raise AssertionError(f"render local produced no Deployment with a {CONTAINER} container")


def local_argv(out_dir: Path) -> list[str]:
    """What the tests and the serving benchmark run: the local stack's rendered argv."""
    return rendered_argv("local", out_dir)
