"""affected-stacks against a real temporary git repository: commits that change a stack file, the
program, requirements, docs or tests, and what each affects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llamafleet.delivery.affected import affected_stacks, stacks_touched
from llamafleet.delivery.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL = ["aws-dev", "onprem", "hybrid", "prod", "local"]
FILES = [
    *(f"stacks/Pulumi.{s}.yaml" for s in ALL),
    "Pulumi.yaml",
    "requirements.txt",
    "requirements-dev.txt",
    "pyproject.toml",
    "README.md",
    "Makefile",
    "docs/extending.md",
    "tests/unit/test_x.py",
    "benchmarks/README.md",
    ".github/workflows/pr.yml",
    "llamafleet/program/stack.py",
    "llamafleet/components/sizing.py",
    "llamafleet/settings/schema.py",
    "llamafleet/policy/rules.py",
    "llamafleet/delivery/cli.py",
    "images/Dockerfile.cpu",
    "scripts/local-cluster",
    "scripts/engine-versions.env",
]


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "--quiet", "--initial-branch=main")
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"{name}\n")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "base")
    return root


def commit(repo: Path, change: dict[str, str | None]) -> tuple[str, str]:
    """Apply `change` (path -> new text, None deletes) on a branch off main; (base, head)."""
    base = git(repo, "rev-parse", "main")
    git(repo, "checkout", "--quiet", "--detach", base)
    for name, text in change.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "change")
    return base, git(repo, "rev-parse", "HEAD")


def affected(repo: Path, change: dict[str, str | None], *extra: str) -> object:
    base, head = commit(repo, change)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamafleet.delivery",
            "affected-stacks",
            "--base",
            base,
            "--head",
            head,
            "--repo",
            str(repo),
            *extra,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.endswith("\n") and "\n" not in out[:-1]  # one line, for $GITHUB_OUTPUT
    return json.loads(out)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stacks/Pulumi.aws-dev.yaml": "x: 1\n"}, ["aws-dev"]),
        (
            {"stacks/Pulumi.prod.yaml": "x\n", "stacks/Pulumi.onprem.yaml": "y\n"},
            ["onprem", "prod"],
        ),
        ({"docs/extending.md": "more\n", "tests/unit/test_x.py": "x\n", "README.md": "r\n"}, []),
        ({"benchmarks/README.md": "b\n", ".github/workflows/pr.yml": "w\n", "Makefile": "m\n"}, []),
        ({"llamafleet/delivery/cli.py": "d\n"}, []),
        ({}, []),
        ({"llamafleet/program/stack.py": "p\n"}, ALL),
        ({"llamafleet/components/sizing.py": "c\n"}, ALL),
        ({"llamafleet/settings/schema.py": "s\n"}, ALL),
        ({"llamafleet/policy/rules.py": "r\n"}, ALL),
        ({"requirements.txt": "pulumi==9\n"}, ALL),
        ({"requirements-dev.txt": "pytest==9\n"}, ALL),
        ({"Pulumi.yaml": "name: x\n"}, ALL),
        ({"images/Dockerfile.cpu": "FROM x\n"}, ALL),
        ({"scripts/engine-versions.env": "PULUMI_VERSION=1\n"}, ALL),
        ({"something/new.txt": "unknown paths affect every stack\n"}, ALL),
        ({"scripts/local-cluster": "l\n"}, ["local"]),
        # A new stack file: that stack (in name order after the known ones).
        ({"stacks/Pulumi.staging.yaml": "s\n"}, ["staging"]),
        # A deleted stack file: nothing to render or preview at the head.
        ({"stacks/Pulumi.hybrid.yaml": None}, []),
        # A deleted program file: every stack still there.
        ({"llamafleet/policy/rules.py": None, "stacks/Pulumi.local.yaml": None}, ALL[:-1]),
    ],
)
def test_affected_stacks_of_a_change(
    repo: Path, change: dict[str, str | None], expected: list[str]
) -> None:
    assert affected(repo, change) == expected


def test_the_matrix_lists_previewed_stacks_with_their_runners(repo: Path) -> None:
    assert affected(repo, {"llamafleet/program/stack.py": "m\n"}, "--matrix") == [
        {"stack": "aws-dev", "runs-on": ["ubuntu-24.04"]},
        {"stack": "onprem", "runs-on": ["self-hosted", "dc1"]},
        {"stack": "hybrid", "runs-on": ["self-hosted", "dc1"]},
        {"stack": "prod", "runs-on": ["self-hosted", "prod-vpc"]},
    ]
    assert affected(repo, {"stacks/Pulumi.local.yaml": "l\n"}, "--matrix") == []


def test_a_commit_the_clone_lacks_is_one_line(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    assert main(["affected-stacks", "--base", missing, "--head", "main", "--repo", str(repo)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"llamafleet.delivery affected-stacks: no commit '{missing}' in {repo}: check it out "
        "with its history (fetch-depth: 0)"
    ]
    # An option-looking revision is a revision, never an option (git diff --output=FILE).
    sneaky = f"--output={tmp_path / 'written'}"
    args = ["affected-stacks", f"--base={sneaky}", "--head", "main", "--repo", str(repo)]
    assert main(args) == 1
    assert f"no commit '{sneaky}'" in capsys.readouterr().err
    assert not (tmp_path / "written").exists()


def test_every_path_of_this_repository_is_classified_as_documented() -> None:
    """The rules over the real tree: docs and tests affect nothing, the program everything."""
    stacks = {"local", "aws-dev", "onprem", "hybrid", "prod"}
    tracked = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    for path in tracked:
        touched = stacks_touched(path, stacks)
        if path.startswith(("tests/", "docs/", "benchmarks/")) or path.endswith(".md"):
            assert touched == set(), path
        elif path.startswith(
            (
                "llamafleet/program/",
                "llamafleet/components/",
                "llamafleet/settings/",
                "llamafleet/policy/",
            )
        ):
            assert touched == stacks, path
    assert affected_stacks(["stacks/Pulumi.prod.yaml", "README.md"], stacks) == ["prod"]
