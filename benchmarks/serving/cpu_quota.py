"""Run a process under a 1-CPU CFS quota, as Kubernetes does for `limits.cpu: 1`."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

QUOTA_PERIOD_US = 100_000
# Moves the shell into the cgroup, then execs the server so every thread it spawns is inside.
ENTER_AND_EXEC = 'echo $$ > "$0" && exec "$@"'


def _cgroup_v2(name: str, cpus: int) -> Path | None:
    root = Path("/sys/fs/cgroup")
    for base in (root, root / "unified"):
        controllers = base / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            group = base / name
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{cpus * QUOTA_PERIOD_US} {QUOTA_PERIOD_US}")
            return group / "cgroup.procs"
    return None


def _cgroup_v1(name: str, cpus: int) -> Path | None:
    base = Path("/sys/fs/cgroup/cpu")
    if not (base / "cpu.cfs_quota_us").exists():
        return None
    group = base / name
    group.mkdir(exist_ok=True)
    (group / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
    (group / "cpu.cfs_quota_us").write_text(str(cpus * QUOTA_PERIOD_US))
    return group / "cgroup.procs"


def quota_prefix(name: str, cpus: int = 1) -> tuple[list[str], str]:
    """(argv prefix, how the limit is applied). Falls back to taskset, an approximation:
    pinning to one core oversubscribes it too, but without CFS throttling."""
    for make, how in ((_cgroup_v2, "cgroup v2 cpu.max"), (_cgroup_v1, "cgroup v1 CFS quota")):
        try:
            procs = make(name, cpus)
        except OSError:
            procs = None
        if procs is not None:
            return ["sh", "-c", ENTER_AND_EXEC, str(procs)], f"{how} ({cpus} CPU)"
    if shutil.which("taskset"):
        cores = ",".join(str(c) for c in range(cpus))
        return ["taskset", "-c", cores], f"taskset -c {cores} (approximation, no CFS quota)"
    raise RuntimeError("no way to limit CPUs here: no writable cpu cgroup and no taskset")


def remove_group(name: str) -> None:
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu"):
        group = Path(base) / name
        if group.is_dir():
            with contextlib.suppress(OSError):
                group.rmdir()
