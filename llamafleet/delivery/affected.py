"""Which stacks a change affects, from the paths `git diff --name-only` lists between two commits.

A changed `stacks/Pulumi.<s>.yaml` affects `<s>`; documentation, tests, benchmarks and CI files
affect none; the local-only scripts affect `local`; anything else (the program, components,
settings, policy, images, the gateway, requirements, `Pulumi.yaml`, the engine's pins, and any
path this table does not know) affects every stack: a preview too many costs minutes, a
preview too few hides a change. Only stacks whose file exists at the head commit are listed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from llamafleet.delivery.errors import DeliveryError
from llamafleet.delivery.stacks import STACK_FILE, ordered

# Paths that change no stack: first components, or any path's name.
NO_STACK_DIRS = ("docs", "tests", "benchmarks", ".github", ".ci")
NO_STACK_PREFIXES = ("llamafleet/delivery/",)
NO_STACK_NAMES = ("Makefile", ".gitignore", "LICENSE")
NO_STACK_SUFFIXES = (".md",)
# Scripts that only the local stack's `make up` runs.
LOCAL_ONLY = ("scripts/local-cluster", "scripts/local-s3", "scripts/local-model")
LOCAL_STACK = "local"


def stacks_touched(path: str, stacks: set[str]) -> set[str]:
    """The stacks (out of `stacks`, those at the head commit) that a change to `path` affects."""
    match = STACK_FILE.match(path)
    if match:
        return {match["stack"]} & stacks
    pure = PurePosixPath(path)
    if (
        pure.parts[0] in NO_STACK_DIRS
        or path.startswith(NO_STACK_PREFIXES)
        or pure.name in NO_STACK_NAMES
        or pure.suffix in NO_STACK_SUFFIXES
    ):
        return set()
    if path in LOCAL_ONLY:
        return {LOCAL_STACK} & stacks
    return set(stacks)


def affected_stacks(paths: Iterable[str], stacks: set[str]) -> list[str]:
    """Every stack a change to `paths` affects, in deploy order."""
    found: set[str] = set()
    for path in paths:
        found |= stacks_touched(path, stacks)
    return ordered(found)


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise DeliveryError(f"cannot run git: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DeliveryError(f"git {' '.join(args[:2])}: {why}")
    return done.stdout


def resolve_commit(repo: Path, rev: str) -> str:
    """`rev` as a full commit id.

    Raises:
        DeliveryError: the clone does not have it (one line that says so).
    """
    try:
        return _git(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        ).strip()
    except DeliveryError:
        raise DeliveryError(
            f"no commit {rev!r} in {repo}: check it out with its history (fetch-depth: 0)"
        ) from None


def changed_paths(repo: Path, base: str, head: str) -> list[str]:
    """The paths that differ between two commits (a rename lists both names)."""
    out = _git(repo, "diff", "--name-only", "--no-renames", "-z", base, head, "--")
    return [p for p in out.split("\0") if p]


def stacks_at(repo: Path, commit: str) -> set[str]:
    """The stacks whose `stacks/Pulumi.<stack>.yaml` exists at `commit`."""
    out = _git(repo, "ls-tree", "--name-only", "-z", commit, "--", "stacks/")
    return {m["stack"] for p in out.split("\0") if (m := STACK_FILE.match(p))}


def affected_between(repo: Path, base: str, head: str) -> list[str]:
    """The stacks that the change from `base` to `head` affects, in deploy order."""
    base_id, head_id = resolve_commit(repo, base), resolve_commit(repo, head)
    return affected_stacks(changed_paths(repo, base_id, head_id), stacks_at(repo, head_id))
