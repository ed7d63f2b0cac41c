"""`llamafleet render`: the program's Kubernetes objects as YAML files, plus every declared
resource in resources.json, secrets redacted. Stable file names make PR diffs readable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.program.stack import main as program_main
from llamafleet.settings.load import engine_config, load_stack_file, resolve_stack_file

CLUSTER_SCOPED_DIR = "_cluster"


@dataclass(frozen=True)
class Rendered:
    """Every resource one mock run of the program declared, in registration order."""

    declared: list[Declared]

    @property
    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """The Kubernetes objects among them, as manifests with secrets redacted."""
        return [kubernetes_object(d) for d in self.declared if is_kubernetes_object(d)]


def is_kubernetes_object(declared: Declared) -> bool:
    """Whether `declared` is a Kubernetes object: a custom `kubernetes:` resource whose inputs
    name a `kind`."""
    return declared.custom and declared.type.startswith("kubernetes:") and "kind" in declared.inputs


def kubernetes_object(declared: Declared) -> dict[str, Any]:
    """The object's manifest: its inputs, secrets redacted."""
    return declared.redacted_inputs


def render(stack_or_path: str) -> Rendered:
    """Run the program for a stack (name or stack file, see resolve_stack_file) under Pulumi's
    mocks, as a preview; SettingsError (from load_stack_file) before anything runs."""
    stack, path = resolve_stack_file(stack_or_path)
    load_stack_file(path)  # a bad stack stops here, with its one clear message
    return Rendered(run_program(program_main, stack, engine_config(path)))


def object_path(obj: dict[str, Any], cluster: str | None = None) -> Path:
    """`<namespace>/<Kind>-<name>.yaml`, under `<cluster>/` when a stack spans clusters."""
    metadata = obj.get("metadata", {})
    folder = Path(metadata.get("namespace") or CLUSTER_SCOPED_DIR)
    if cluster is not None:
        folder = cluster / folder
    return folder / f"{obj['kind']}-{metadata.get('name', 'unnamed')}.yaml"


def cluster_of(declared: Declared) -> str:
    """The cluster an object goes to: its Kubernetes provider's name, less `-k8s`."""
    provider_name = declared.provider.split("::")[-2] if declared.provider else ""
    return provider_name.removesuffix("-k8s") or "default"


def write(rendered: Rendered, out: Path) -> list[Path]:
    """Write each Kubernetes object to `out`/object_path (YAML, keys sorted; one folder per
    cluster when they span several) and every resource to `out`/resources.json.

    Returns:
        The YAML files written, in path order (resources.json not among them).

    Raises:
        ValueError: two objects would share a path (checked before anything is written).
    """
    objects = [d for d in rendered.declared if is_kubernetes_object(d)]
    spans_clusters = len({cluster_of(d) for d in objects}) > 1
    files: dict[Path, dict[str, Any]] = {}
    for declared in objects:
        obj = kubernetes_object(declared)
        target = out / object_path(obj, cluster_of(declared) if spans_clusters else None)
        if target in files:
            raise ValueError(f"two objects render to {target}")
        files[target] = obj
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for target, obj in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(obj, sort_keys=True))
        written.append(target)
    # Sorted: registration order varies between runs (the program is asynchronous), and two
    # renders of one stack must diff clean.
    inventory = [
        {
            "type": d.type,
            "name": d.name,
            "urn": d.urn,
            "parent": d.parent,
            "custom": d.custom,
            "inputs": d.redacted_inputs,
            "options": _options(d),
        }
        for d in sorted(rendered.declared, key=lambda d: d.urn)
    ]
    (out / "resources.json").write_text(json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    return sorted(written)


def _options(declared: Declared) -> dict[str, Any]:
    """The resource options a reviewer should see, where set."""
    options = {
        "dependsOn": sorted(declared.depends_on),
        "ignoreChanges": sorted(declared.ignore_changes),
        "protect": declared.protect,
        "retainOnDelete": declared.retain_on_delete,
        "aliases": sorted(declared.aliases),
    }
    return {key: value for key, value in options.items() if value}
