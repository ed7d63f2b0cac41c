"""An `up` interrupted halfway (Ctrl-C, or killed outright) is finished by the next `llamafleet
up`, which says in one line what it found."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import LLAMAFLEET, TEAM_B, Cluster, Project, ProjectFactory, small_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str
) -> Iterator[Project]:
    # One team, so the stack is small; its namespace shows when the update is underway.
    made = make_project("e2e-interrupted", small_config(e2e_models, store_endpoint))
    yield made
    made.llamafleet("destroy", check=False)


def start_up(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LLAMAFLEET), "up", project.stack, "--work-dir", str(project.work_dir)],
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def wait_for_namespace(cluster: Cluster, name: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 300
    while cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the update never reached the cluster"
        time.sleep(0.2)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_the_next_up_finishes_an_interrupted_one(
    project: Project, local_cluster: Cluster, how: signal.Signals
) -> None:
    project.llamafleet("destroy")  # from nothing, so the update is long enough to interrupt
    running = start_up(project)
    wait_for_namespace(local_cluster, f"llamafleet-{TEAM_B}", running)
    # Ctrl-C reaches the whole foreground process group; SIGKILL takes the engine down too, so
    # its lock stays behind.
    os.killpg(running.pid, how)
    interrupted, _ = running.communicate(timeout=300)
    assert running.returncode != 0

    again = project.llamafleet("up")

    said = [
        line
        for line in (again.stdout + again.stderr).splitlines()
        if "was interrupted and left its lock" in line
    ]
    if how == signal.SIGINT:
        assert "interrupted: the engine stopped safely; run it again" in interrupted
        assert said == []  # the engine released its own lock
    else:
        assert len(said) == 1, again.stderr
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0
    deployment = local_cluster.get("deployment", "small-cpu-small", "-n", f"llamafleet-{TEAM_B}")
    assert deployment["metadata"]["name"] == "small-cpu-small"
