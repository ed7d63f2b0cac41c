"""The policy rules on what the real engine registers: `llamafleet preview` and `up` check every
Kubernetes object of the preview (unchanged ones too) and stop with the rule's line, changing
nothing; a value a rule needs that the preview cannot show fails the preview closed, and `up`
checks that object as the engine registers it, with the value known: refused if it breaks a rule
(never created), created if it passes.

The engine here loads no CrossGuard pack (llamafleet/policy/registered.py says why); the violating
programs are llamafleet's own plus one Deployment a platform team might add
(tests/e2e/policy_driver.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import TEAM_B, Cluster, Project, ProjectFactory, small_config

from llamafleet.command import engine

pytestmark = pytest.mark.e2e

DRIVER = Path(__file__).with_name("policy_driver.py")
NAMESPACE = f"llamafleet-{TEAM_B}"


@pytest.fixture(scope="module")
def project(
    make_project: ProjectFactory, e2e_models: Path, store_endpoint: str
) -> Iterator[Project]:
    made = make_project("e2e-policy", small_config(e2e_models, store_endpoint))
    yield made
    made.llamafleet("destroy", check=False)


def drive(project: Project, op: str, extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(DRIVER), op, project.stack, str(project.work_dir), extra]
    return subprocess.run(
        [*argv, NAMESPACE],
        env=project.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def kubernetes_objects_in_state(project: Project) -> int:
    exported = project.pulumi("stack", "export")
    resources = json.loads(exported.stdout)["deployment"]["resources"]
    return sum(
        1
        for r in resources
        if r["type"].startswith("kubernetes:") and isinstance(r.get("inputs", {}).get("kind"), str)
    )


def policy_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("policy: ")]


def test_a_compliant_stack_goes_up_and_every_object_is_checked(project: Project) -> None:
    up = project.llamafleet("up")  # the preview first: a new stack, many values not known yet
    assert f"{project.stack}: policy: " in up.stdout.splitlines()[0], up.stdout

    again = project.llamafleet("preview", "--expect-no-changes")

    checked = [line for line in again.stdout.splitlines() if "Kubernetes objects pass" in line]
    assert checked == [
        f"{project.stack}: policy: {kubernetes_objects_in_state(project)} Kubernetes objects "
        "pass every rule"
    ], again.stdout


def test_a_violating_preview_stops_with_the_rules_line(project: Project) -> None:
    done = drive(project, "preview", "root")

    assert done.returncode == 1, done.stdout + done.stderr
    assert policy_lines(done) == [
        f"policy: runs_as_non_root: Deployment {NAMESPACE}/policy-extra: container extra: "
        "runAsNonRoot is not true"
    ]


def test_a_violating_up_stops_before_changing_anything(
    project: Project, local_cluster: Cluster
) -> None:
    done = drive(project, "up", "root")

    assert done.returncode == 1, done.stdout + done.stderr
    assert any("runs_as_non_root" in line for line in policy_lines(done)), done.stderr
    missing = local_cluster.kubectl(
        "get", "deployment", "policy-extra", "-n", NAMESPACE, check=False
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0


def test_a_value_not_known_until_the_update_fails_closed(project: Project) -> None:
    done = drive(project, "preview", "unknown")

    assert done.returncode == 1, done.stdout + done.stderr
    assert policy_lines(done) == [
        f"policy: image_pinned_by_digest: Deployment {NAMESPACE}/policy-extra: cannot be "
        "checked: Deployment.spec.template.spec.containers[0].image is not known until the "
        "update"
    ]
    assert f"hint: {engine.UP_CHECKS_THEM}" in done.stderr.splitlines()


def test_the_same_object_passes_once_its_value_is_known(project: Project) -> None:
    """The control: with the digest given, the added Deployment passes and would be created."""
    done = drive(project, "preview", "known")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout).get("create", 0) >= 1


def resource_names_in_state(project: Project) -> set[str]:
    exported = json.loads(project.pulumi("stack", "export").stdout)
    return {r["urn"].rsplit("::", 1)[-1] for r in exported["deployment"]["resources"]}


def test_an_up_refuses_an_object_that_breaks_a_rule_once_its_value_is_known(
    project: Project, local_cluster: Cluster
) -> None:
    """The preview cannot see the built image's tag; the update checks the Deployment as it is
    registered, refuses it, and it never reaches the cluster. The image resource before it was
    created: the rest of the update ran, as the error says."""
    done = drive(project, "up", "unknown-tag")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "image_pinned_by_digest" in done.stderr and engine.NOT_SHOWN_IN_PREVIEW in done.stderr
    (refused,) = policy_lines(done)
    assert refused.startswith(
        f"policy: image_pinned_by_digest: Deployment {NAMESPACE}/policy-extra: "
    ), refused
    assert "registry.example/extra:1.0" in refused
    missing = local_cluster.kubectl(
        "get", "deployment", "policy-extra", "-n", NAMESPACE, check=False
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert "policy-extra-unknown-tag" in resource_names_in_state(project)


def test_an_up_creates_the_object_once_its_value_is_known_and_passes(
    project: Project, local_cluster: Cluster
) -> None:
    done = drive(project, "up", "unknown")

    assert done.returncode == 0, done.stdout + done.stderr
    assert engine.NOT_SHOWN_IN_PREVIEW in done.stderr
    checked = [
        line for line in done.stderr.splitlines() if "checked as they were registered" in line
    ]
    assert len(checked) == 1, done.stderr
    image = local_cluster.kubectl(
        "get",
        "deployment",
        "policy-extra",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert image.stdout == "registry.example/extra@sha256:" + "0" * 64

    # Back to llamafleet's own program: the added objects go, and nothing else changes.
    project.llamafleet("up")
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0
    assert not {n for n in resource_names_in_state(project) if n.startswith("policy-extra")}
