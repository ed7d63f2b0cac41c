"""Render one stack at the base and at the head of a pull request, and diff the two.

The head is the checkout itself; the base is a detached `git worktree` of the base commit, run
with its own code first on the import path (the base program, not the head's, renders the
base), in the same environment. `llamafleet render` runs the program under Pulumi's mock
monitor: no engine, no credentials, so forks get it too.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llamafleet.delivery.affected import resolve_commit
from llamafleet.delivery.errors import DeliveryError
from llamafleet.delivery.render_diff import RenderDiff, diff_renders
from llamafleet.delivery.reports import RENDER_DIFF, RENDER_ERROR

# Lines of a failed render's stderr kept in the report.
ERROR_LINES = 40


def _render(
    command: Sequence[str], stack: str, out: Path, cwd: Path, env: dict[str, str]
) -> str | None:
    """Run one render; its error (stderr's last lines) or None."""
    try:
        done = subprocess.run(
            [*command, stack, "--out", str(out)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        return f"cannot run {command[0]}: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    tail = done.stderr.strip().splitlines()[-ERROR_LINES:]
    return "\n".join([f"exit status {done.returncode}", *tail])


def _has_stack(repo: Path, commit: str, stack: str) -> bool:
    probe = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}:stacks/Pulumi.{stack}.yaml"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _render_base(
    repo: Path, commit: str, command: Sequence[str], stack: str, out: Path
) -> str | None:
    with tempfile.TemporaryDirectory(prefix="llamafleet-base-") as tmp:
        tree = Path(tmp) / "tree"
        added = subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(tree), commit],
            capture_output=True,
            text=True,
            check=False,
        )
        if added.returncode != 0:
            return f"git worktree add: {added.stderr.strip()}"
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            return _render(command, stack, out, tree, env)
        finally:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
                check=False,
            )


def render_pair(
    repo: Path, stack: str, base: str, out: Path, command: Sequence[str]
) -> RenderDiff | None:
    """Render `stack` at the checkout (`out/head`) and at `base` (`out/base`), then write
    `out/render.json`, or `out/render-error.txt` when a render failed. Returns the diff, or
    None when there is none to show.

    Raises:
        DeliveryError: the head's render failed (the base's failing is only reported).
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / RENDER_ERROR).unlink(missing_ok=True)
    (out / RENDER_DIFF).unlink(missing_ok=True)
    error = _render(command, stack, out / "head", repo, dict(os.environ))
    if error is not None:
        (out / RENDER_ERROR).write_text(f"the head commit's render failed: {error}\n")
        raise DeliveryError(f"render {stack} at the head commit failed (see {out / RENDER_ERROR})")
    commit = resolve_commit(repo, base)
    if _has_stack(repo, commit, stack):
        error = _render_base(repo, commit, command, stack, out / "base")
        if error is not None:
            (out / RENDER_ERROR).write_text(
                f"the base commit's render failed, so there is no diff: {error}\n"
            )
            return None
    diff = diff_renders(out / "base", out / "head")
    (out / RENDER_DIFF).write_text(diff.to_json())
    return diff
