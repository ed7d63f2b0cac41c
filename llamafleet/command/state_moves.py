"""Dynamic providers a stack's state still names under the module paths they had before the
`llamafleet` package: `components.api_keys.ApiKeyProvider` is now
`llamafleet.components.api_keys.ApiKeyProvider`.

Pulumi pickles each dynamic resource's provider into the state (its `__provider` input and
output, by module path: pulumi/dynamic/dynamic.py `serialize_provider`), and `refresh` and
`destroy` load it from there (pulumi/dynamic/__main__.py `Read`, `Delete`). After the move those
old paths import nothing, so the `llamafleet` command rewrites them once, before any `up`,
`refresh` or `destroy`, instead of keeping top-level packages only to be unpickled."""

from __future__ import annotations

import base64
import copy
import io
from collections.abc import Mapping
from typing import Any

import dill  # pyright: ignore[reportMissingTypeStubs]
from pulumi.dynamic.dynamic import serialize_provider

# Top-level packages of the layout before, and where their modules live now.
MOVED_PACKAGES = {"components": "llamafleet.components", "modelsync": "llamafleet.modelsync"}
# The package of every Python dynamic resource's type (`pulumi-python:dynamic:Resource`, or
# `pulumi-python:dynamic/<module>:<name>` as ApiKey declares itself), and the property its
# pickled provider is kept in (pulumi/dynamic/__main__.py).
DYNAMIC_PACKAGE = "pulumi-python"
PROVIDER_KEY = "__provider"


def moved_module(module: str) -> str | None:
    """`module`'s path now, if it was one of the moved packages' modules; else None."""
    top, _, rest = module.partition(".")
    new = MOVED_PACKAGES.get(top)
    return None if new is None else f"{new}.{rest}" if rest else new


# The pickles come from the stack's own state, which the engine's provider host unpickles anyway.
class _MovingUnpickler(dill.Unpickler):  # pyright: ignore[reportUntypedBaseClass]  # noqa: S301
    """Loads a pickled provider, looking up each moved module at its new path."""

    moved = False

    def find_class(self, module: str, name: str) -> Any:
        new = moved_module(module)
        if new is not None:
            self.moved = True
        return super().find_class(new or module, name)


def moved_provider(serialized: str) -> str | None:
    """A serialized provider (base64 of a dill pickle, as Pulumi stores it) re-serialized with
    its moved modules at their new paths, exactly as the program serializes it now; None where
    it names no moved module."""
    unpickler = _MovingUnpickler(io.BytesIO(base64.b64decode(serialized)))
    provider = unpickler.load()
    return serialize_provider(provider) if unpickler.moved else None


def move_providers(deployment: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of an exported deployment (`pulumi stack export`'s `deployment`) whose dynamic
    resources name their providers' new module paths, and how many resources changed."""
    moved = copy.deepcopy(dict(deployment))
    count = 0
    for resource in moved.get("resources") or []:
        if str(resource.get("type", "")).split(":", 1)[0] != DYNAMIC_PACKAGE:
            continue
        changed = False
        for section in ("inputs", "outputs"):
            properties = resource.get(section) or {}
            serialized = properties.get(PROVIDER_KEY)
            if isinstance(serialized, str) and (new := moved_provider(serialized)) is not None:
                properties[PROVIDER_KEY] = new
                changed = True
        count += changed
    return moved, count
