"""The GitHub workflows: actionlint finds nothing, every action is pinned by commit, and what
the design promises holds (forks get no credentials and no self-hosted runner, deploys go in
order, one at a time per stack, each in its environment)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from support.exporters import pinned, reported_version

from llamafleet.command.engine import engine_bin_dir
from llamafleet.delivery.cli import build_parser
from llamafleet.delivery.stacks import DEPLOY_ORDER, GITHUB_HOSTED, preview_matrix, runs_on

REPO_ROOT = Path(__file__).resolve().parents[2]
GITHUB = REPO_ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"
FILES = sorted([*WORKFLOWS.glob("*.yml"), *GITHUB.glob("actions/*/action.yml")])
SAME_REPO = "github.event.pull_request.head.repo.full_name == github.repository"
DEPENDABOT = "github.actor == 'dependabot[bot]'"
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*\S))?\s*$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})$")
TAG = re.compile(r"^v\d+\.\d+\.\d+$")
AWS = "aws-actions/configure-aws-credentials"


def load(name: str) -> dict[str, Any]:
    return cast("dict[str, Any]", yaml.safe_load((WORKFLOWS / name).read_text()))


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    return cast("dict[str, Any]", workflow.get("on", workflow.get(True)))


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", job.get("steps", []))


def uses(job: dict[str, Any]) -> list[str]:
    return [str(s["uses"]).split("@")[0] for s in steps(job) if "uses" in s]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


def all_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path.name, name, job)
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for name, job in load(path.name)["jobs"].items()
    ]


def test_actionlint_finds_nothing() -> None:
    actionlint = engine_bin_dir() / "actionlint"
    if not actionlint.is_file():
        pytest.skip(f"not built: {actionlint}: run scripts/bootstrap-engine actionlint")
    assert reported_version([str(actionlint), "-version"]) == pinned("ACTIONLINT_VERSION")
    # shellcheck and pyflakes off: the same findings on every machine (the run: blocks are
    # one-line calls of llamafleet.delivery); .github/actionlint.yaml names the runner labels.
    argv = [str(actionlint), "-no-color", "-shellcheck=", "-pyflakes="]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_actionlint_does_find_a_broken_workflow(tmp_path: Path) -> None:
    """The control: the check above is not vacuous."""
    actionlint = engine_bin_dir() / "actionlint"
    if not actionlint.is_file():
        pytest.skip(f"not built: {actionlint}: run scripts/bootstrap-engine actionlint")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    permissions:\n"
        "      id-token: writ\n    steps:\n      - run: echo hello\n"
    )
    argv = [str(actionlint), "-no-color", "-shellcheck=", "-pyflakes=", str(broken)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert '"writ" is invalid as permission' in done.stdout


def pins() -> list[tuple[str, str, str, str]]:
    """(file, action, sha, tag) of every remote `uses:`; local ones (./) left out."""
    found: list[tuple[str, str, str, str]] = []
    for path in FILES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            match = USES.match(line)
            if not match or match["ref"].startswith("./"):
                continue
            pinned = PINNED.match(match["ref"])
            where = f"{path.relative_to(REPO_ROOT)}:{n}"
            assert pinned, f"{where}: not owner/repo@<40-hex commit>: {line.strip()}"
            assert match["comment"] and TAG.match(match["comment"]), (
                f"{where}: no `# vX.Y.Z` tag comment: {line.strip()}"
            )
            found.append((where, pinned["action"], pinned["sha"], str(match["comment"])))
    return found


def test_every_action_is_pinned_by_commit_with_its_tag() -> None:
    found = pins()
    assert len({a for _, a, _, _ in found}) >= 6
    # One version of each action everywhere.
    versions: dict[str, set[tuple[str, str]]] = {}
    for _, action, sha, tag in found:
        versions.setdefault(action, set()).add((sha, tag))
    assert {a: v for a, v in versions.items() if len(v) > 1} == {}


def test_the_readme_table_records_each_pin() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for _, action, sha, tag in pins():
        row = re.search(
            rf"^\| `{re.escape(action)}` \| {re.escape(tag)} \| `{sha}` \|", readme, re.M
        )
        assert row, f"README's pin table has no row for {action} {tag} {sha}"


def test_no_workflow_runs_on_pull_request_target() -> None:
    for path in FILES:
        assert "pull_request_target" not in re.sub(r"#.*", "", path.read_text()), path
    assert set(triggers(load("pr.yml"))) == {"pull_request"}


def test_every_job_has_minimal_permissions() -> None:
    for name in ("pr.yml", "pr-comment.yml", "deploy.yml", "drift.yml"):
        assert load(name)["permissions"] == {}, name
    for file, name, job in all_jobs():
        permissions = cast("dict[str, str]", job.get("permissions"))
        assert isinstance(permissions, dict), f"{file}: {name}: no permissions"
        assert permissions.get("contents") == "read", f"{file}: {name}"
        # An OIDC token only where AWS credentials are configured.
        assert (permissions.get("id-token") == "write") == (AWS in uses(job)), f"{file}: {name}"
        # Reading another run's artifacts: only the job that posts a fork's comment.
        assert ("actions" in permissions) == (file == "pr-comment.yml"), f"{file}: {name}"
        assert set(permissions) <= {"contents", "id-token", "pull-requests", "issues", "actions"}
        assert permissions.get("actions", "read") == "read", f"{file}: {name}"


def test_forks_get_no_secrets_no_credentials_and_no_self_hosted_runner() -> None:
    jobs = load("pr.yml")["jobs"]
    for name, job in jobs.items():
        text = yaml.safe_dump(job)
        hosted = job["runs-on"] in ("ubuntu-24.04", ["ubuntu-24.04"])
        if not hosted or "secrets." in text or AWS in uses(job) or "environment" in job:
            assert SAME_REPO in str(job.get("if", "")), f"pr.yml: {name} is open to forks"
    assert SAME_REPO in str(jobs["preview"]["if"])
    assert jobs["preview"]["runs-on"] == "${{ matrix.runs-on }}"
    # Forks still get the render diff: no such condition there, and the comment's body is
    # composed for them too (only posting it needs a token that can write).
    assert SAME_REPO not in str(jobs["render"].get("if", ""))
    comment = {str(s.get("name", s.get("uses"))): s for s in steps(jobs["comment"])}
    assert SAME_REPO in str(comment["post"]["if"]) and "upsert-comment" in comment["post"]["run"]
    assert "comment-body" in comment["compose"]["run"] and "if" not in comment["compose"]
    # A fork's comment is left for pr-comment.yml, as an artifact of forks' runs only, and
    # Dependabot's (GitHub runs its pull requests as a fork's: read-only token, no secrets).
    assert DEPENDABOT.replace("==", "!=") in str(jobs["preview"]["if"])
    assert DEPENDABOT.replace("==", "!=") in str(comment["post"]["if"])
    untrusted = f"{SAME_REPO.replace('==', '!=')} || {DEPENDABOT}"
    kept = comment["keep the comment for pr-comment.yml"]
    uploaded = next(s for k, s in comment.items() if k.startswith("actions/upload-artifact"))
    assert kept["if"] == untrusted and uploaded["if"] == untrusted
    assert "fork-comment/pr-number" in kept["run"] and "fork-comment/comment.md" in kept["run"]
    assert uploaded["with"]["name"] == "fork-comment"


def test_a_forks_comment_is_posted_by_a_workflow_run_that_never_runs_its_code() -> None:
    """pr-comment.yml: started by pr.yml's completed runs, for forks only; it checks out the
    default branch (no `ref`), downloads the fork run's artifact as data, and posts it through
    `post-fork-comment`, which checks the pull request's head against the run's."""
    workflow = load("pr-comment.yml")
    assert triggers(workflow) == {
        "workflow_run": {"workflows": [load("pr.yml")["name"]], "types": ["completed"]}
    }
    (job,) = workflow["jobs"].values()
    assert "workflow_run.event == 'pull_request'" in job["if"]
    assert "workflow_run.head_repository.full_name != github.repository ||" in job["if"]
    assert "workflow_run.actor.login == 'dependabot[bot]'" in job["if"]
    by_use = {str(s["uses"]).split("@")[0]: s for s in steps(job) if "uses" in s}
    assert by_use["actions/checkout"]["with"] == {"persist-credentials": False}
    download = by_use["actions/download-artifact"]["with"]
    assert download["pattern"] == "fork-comment"
    assert download["run-id"] == "${{ github.event.workflow_run.id }}"
    assert "secrets." not in yaml.safe_dump(workflow)
    assert "post-fork-comment" in runs(job)
    post = steps(job)[-1]
    assert post["env"]["HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    assert post["env"]["HEAD_REPO"] == "${{ github.event.workflow_run.head_repository.full_name }}"
    assert post["env"]["RUN_URL"] == "${{ github.event.workflow_run.html_url }}"
    # Posts for one branch never race into two comments, and none is cancelled.
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_pull_requests_run_the_checks_then_render_and_preview() -> None:
    jobs = load("pr.yml")["jobs"]
    assert "make lint typecheck" in runs(jobs["checks"])
    # `make unit`: every test but the engine and image ones (they need the local control plane).
    assert "make unit" in runs(jobs["checks"])
    assert 'FAST_TESTS := -n 2 -m "not image and not e2e"' in (REPO_ROOT / "Makefile").read_text()
    assert "checks" in jobs["render"]["needs"] and "checks" in jobs["preview"]["needs"]
    assert "render-pair" in runs(jobs["render"])
    assert "llamafleet preview" in runs(jobs["preview"])
    assert jobs["preview"]["environment"] == "preview-${{ matrix.stack }}"


def test_deploys_go_in_order_one_at_a_time_per_stack() -> None:
    workflow = load("deploy.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    assert list(jobs) == list(DEPLOY_ORDER)
    for before, stack in zip([None, *DEPLOY_ORDER], DEPLOY_ORDER, strict=False):
        job = jobs[stack]
        assert job.get("needs") == before
        assert job["environment"] == stack
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
        assert job["runs-on"] == list(runs_on(stack))
        up = steps(job)[-1]
        assert up["run"] == f".venv/bin/llamafleet up {stack}"
        assert up["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert up["if"] == "steps.newest.outputs.deploy == 'true'"
        on_prem = stack in ("onprem", "hybrid")
        assert ("PULUMI_CONFIG_PASSPHRASE" in up["env"]) == on_prem
        assert (job["runs-on"] == ["self-hosted", "dc1"]) == on_prem
        assert (AWS in uses(job)) == (stack != "onprem")
    assert runs_on("aws-dev") == GITHUB_HOSTED


def test_previews_and_drift_checks_never_join_a_deploys_group() -> None:
    for name in ("pr.yml", "drift.yml"):
        workflow = load(name)
        groups = [str(workflow.get("concurrency", {}).get("group", ""))]
        groups += [
            str(job.get("concurrency", {}).get("group", "")) for job in workflow["jobs"].values()
        ]
        assert not [g for g in groups if g.startswith("pulumi-")], name


def test_drift_checks_every_deployed_stack_on_a_schedule() -> None:
    workflow = load("drift.yml")
    assert set(triggers(workflow)) == {"schedule", "workflow_dispatch"}
    check = workflow["jobs"]["check"]
    assert check["strategy"]["matrix"]["include"] == preview_matrix(list(DEPLOY_ORDER))
    assert "--expect-no-changes" in runs(check)
    issues = workflow["jobs"]["issues"]
    assert issues["permissions"] == {"contents": "read", "issues": "write"}
    assert (
        f"--stacks '{str(list(DEPLOY_ORDER)).replace(chr(39), chr(34)).replace(' ', '')}'"
        in runs(issues)
    )


def test_every_delivery_subcommand_a_workflow_calls_exists() -> None:
    parser = build_parser()
    choices = next(a.choices for a in parser._actions if isinstance(a.choices, dict))
    called = {
        m for path in FILES for m in re.findall(r"llamafleet\.delivery ([a-z-]+)", path.read_text())
    }
    assert called and called <= set(choices), called - set(choices)
