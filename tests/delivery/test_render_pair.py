"""render-pair: a stack rendered at the checkout and at the base commit (a git worktree, run with
the base's own code), then diffed. Against a small git repository whose "render" is a module in
it, and once against a clone of this repository with the real `llamafleet render`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamafleet.delivery.cli import main

from .test_affected_stacks import git

REPO_ROOT = Path(__file__).resolve().parents[2]
# A stand-in for `llamafleet render <stack> --out DIR`: reads the stack file from the current
# directory, writes one object that says which code version rendered it.
FAKE_RENDER = """\
import sys
from pathlib import Path

VERSION = "{version}"
stack, out = sys.argv[1], Path(sys.argv[3])
settings = Path("stacks/Pulumi." + stack + ".yaml")
if not settings.exists() or "fail" in settings.read_text():
    sys.exit("render: cannot render " + stack)
(out / "ns").mkdir(parents=True)
(out / "ns" / "ConfigMap-x.yaml").write_text(
    "code: " + VERSION + "\\n" + settings.read_text()
)
(out / "resources.json").write_text("[]\\n")
"""
RENDER = f"{sys.executable} -m fakerender"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "fakerender").mkdir()
    (repo / "fakerender" / "__main__.py").write_text(FAKE_RENDER.format(version="base"))
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("replicas: 1\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "base")
    # The head: new code and a new setting, left in the work tree (the checkout).
    (repo / "fakerender" / "__main__.py").write_text(FAKE_RENDER.format(version="head"))
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("replicas: 2\n")
    return repo


def _pair(repo: Path, out: Path, stack: str = "dev") -> int:
    args = ["render-pair", "--stack", stack, "--base", "main", "--out", str(out)]
    return main([*args, "--repo", str(repo), "--render-command", RENDER])


def test_the_base_is_rendered_by_the_base_code(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    out = tmp_path / "reports" / "dev"
    assert _pair(repo, out) == 0
    diff = json.loads((out / "render.json").read_text())
    assert diff["changed"] == ["ns/ConfigMap-x.yaml"]
    assert "-code: base\n-replicas: 1\n+code: head\n+replicas: 2\n" in diff["diff"]
    assert not (out / "render-error.txt").exists()
    # The worktree is gone again.
    assert git(repo, "worktree", "list").count("\n") == 0


def test_a_stack_new_at_the_head_is_all_added(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "stacks" / "Pulumi.new.yaml").write_text("replicas: 5\n")
    out = tmp_path / "reports" / "new"
    assert _pair(repo, out, "new") == 0
    diff = json.loads((out / "render.json").read_text())
    assert diff["added"] == ["ns/ConfigMap-x.yaml", "resources.json"]


def test_a_failed_head_render_is_one_line_and_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path)
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("fail\n")
    out = tmp_path / "reports" / "dev"
    assert _pair(repo, out) == 1
    assert capsys.readouterr().err.splitlines() == [
        "llamafleet.delivery render-pair: render dev at the head commit failed "
        f"(see {out / 'render-error.txt'})"
    ]
    assert (out / "render-error.txt").read_text() == (
        "the head commit's render failed: exit status 1\nrender: cannot render dev\n"
    )
    assert not (out / "render.json").exists()


def test_a_failed_base_render_is_reported_without_a_diff(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("fail\n")
    git(repo, "commit", "--quiet", "-am", "a base that cannot render")
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("replicas: 3\n")
    out = tmp_path / "reports" / "dev"
    assert _pair(repo, out) == 0
    assert (
        (out / "render-error.txt")
        .read_text()
        .startswith("the base commit's render failed, so there is no diff: exit status 1\n")
    )
    assert not (out / "render.json").exists()


def test_render_pair_with_the_real_render_on_a_clone(tmp_path: Path) -> None:
    """`llamafleet render local` at HEAD and with one setting changed: the diff is that change."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)], check=True
    )
    stack_file = clone / "stacks" / "Pulumi.local.yaml"
    text = stack_file.read_text()
    assert text.count("replicas: {min: 1, max: 2}") == 1
    stack_file.write_text(text.replace("replicas: {min: 1, max: 2}", "replicas: {min: 1, max: 3}"))
    out = tmp_path / "reports" / "local"
    args = ["render-pair", "--stack", "local", "--base", "HEAD", "--out", str(out)]
    assert main([*args, "--repo", str(clone)]) == 0
    diff = json.loads((out / "render.json").read_text())
    assert diff["added"] == [] and diff["removed"] == []
    assert "llamafleet-demo/HorizontalPodAutoscaler-gemma3-270m-cpu-small.yaml" in diff["changed"]
    changed = [
        line
        for line in diff["diff"].splitlines()
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    assert any(line.startswith("-") and "maxReplicas: 2" in line for line in changed), changed
    assert any(line.startswith("+") and "maxReplicas: 3" in line for line in changed), changed
