"""The difference between two `llamafleet render` outputs (base and head of a pull request).

A render is one YAML file per Kubernetes object plus `resources.json` (every declared resource,
secrets redacted). The diff lists objects added, removed and changed, and one unified diff of
them all (`a/` the base, `b/` the head), `resources.json` last.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from llamafleet.delivery.errors import DeliveryError

RESOURCES = "resources.json"


@dataclass(frozen=True)
class RenderDiff:
    """What changed between two renders; paths relative to the render directory."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    diff: str

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        """One line: how many objects changed, and whether the declared resources did."""
        objects = [
            f"{len([p for p in paths if p != RESOURCES])} {what}"
            for what, paths in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
        ]
        resources = (
            "changed" if RESOURCES in {*self.changed, *self.added, *self.removed} else "same"
        )
        return f"objects: {', '.join(objects)}; declared resources ({RESOURCES}): {resources}"

    def to_json(self) -> str:
        """The diff as JSON (what `render-diff --out` writes)."""
        return json.dumps(
            {
                "added": list(self.added),
                "removed": list(self.removed),
                "changed": list(self.changed),
                "diff": self.diff,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> RenderDiff:
        """Read what `to_json` wrote.

        Raises:
            DeliveryError: the text is not such a document.
        """
        try:
            data = cast("dict[str, Any]", json.loads(text))
            return cls(
                tuple(str(p) for p in data["added"]),
                tuple(str(p) for p in data["removed"]),
                tuple(str(p) for p in data["changed"]),
                str(data["diff"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError(f"{where}: not a render diff ({exc})") from None


def _files(root: Path) -> dict[str, Path]:
    if not root.exists():
        return {}
    if not root.is_dir():
        raise DeliveryError(f"{root}: not a directory")
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _order(path: str) -> tuple[bool, str]:
    return (path == RESOURCES, path)


def _lines(path: Path | None) -> list[str]:
    if path is None:
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)


def diff_renders(base: Path, head: Path) -> RenderDiff:
    """Compare the render in `base` with the one in `head` (a missing directory is empty: a
    stack the base commit did not have; a path that is not a directory is a DeliveryError)."""
    before, after = _files(base), _files(head)
    added = sorted(set(after) - set(before), key=_order)
    removed = sorted(set(before) - set(after), key=_order)
    changed = sorted(
        (p for p in set(before) & set(after) if before[p].read_bytes() != after[p].read_bytes()),
        key=_order,
    )
    chunks: list[str] = []
    for path in sorted({*added, *removed, *changed}, key=_order):
        old, new = _lines(before.get(path)), _lines(after.get(path))
        for line in difflib.unified_diff(
            old,
            new,
            fromfile=f"a/{path}" if path in before else "/dev/null",
            tofile=f"b/{path}" if path in after else "/dev/null",
        ):
            chunks.append(
                line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            )
    return RenderDiff(tuple(added), tuple(removed), tuple(changed), "".join(chunks))
