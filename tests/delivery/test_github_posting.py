"""upsert-comment, post-fork-comment, open-drift-issue and branch-head against a real HTTP server
on loopback that speaks the GitHub endpoints they use (tests/delivery/fake_github.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llamafleet.delivery.bodies import PREVIEW_MARKER, drift_marker, drift_title
from llamafleet.delivery.cli import main

from .fake_github import BOT, REPO, TOKEN, State, fake_github

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO)


def _api(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("GITHUB_API_URL", url)


def _ours(state: State, issue: int) -> list[dict[str, object]]:
    return [c for c in state.comments.get(issue, []) if str(c["body"]).startswith(PREVIEW_MARKER)]


def _body(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "comment.md"
    path.write_text(f"{PREVIEW_MARKER}\n{text}")
    return path


@pytest.mark.usefixtures("env")
def test_the_comment_is_created_once_then_updated_on_a_later_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        for n in range(5):  # three pages of two before ours would be found
            state.add_comment(7, f"review comment {n}", login="alice")
        # Someone else's comment that copies the marker is never taken for ours.
        state.add_comment(7, f"{PREVIEW_MARKER}\nquoted by mallory", login="mallory")

        assert (
            main(["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "one"))]) == 0
        )
        assert "comment created" in capsys.readouterr().out
        assert [c["body"] for c in _ours(state, 7) if c["user"] == {"login": BOT}] == [
            f"{PREVIEW_MARKER}\none"
        ]

        assert (
            main(["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "two"))]) == 0
        )
        assert "comment updated" in capsys.readouterr().out
        ours = [c for c in _ours(state, 7) if c["user"] == {"login": BOT}]
        assert [c["body"] for c in ours] == [f"{PREVIEW_MARKER}\ntwo"]
        assert len(state.comments[7]) == 7  # 5 + mallory's + ours: nothing added the 2nd time
        assert str(state.comments[7][5]["body"]).endswith("quoted by mallory")

        # Every page read (Link: rel="next"): 3 the first time, 4 once ours was the 7th.
        pages = [p for m, p in state.requests if m == "GET"]
        assert len(pages) == 7
        assert (
            main(["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "two"))]) == 0
        )
        assert "comment unchanged" in capsys.readouterr().out
        assert [m for m, _ in state.requests].count("PATCH") == 1


@pytest.mark.usefixtures("env")
def test_update_only_never_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        args = ["upsert-comment", "--pr", "3", "--body-file", str(_body(tmp_path, "x"))]
        assert main([*args, "--update-only"]) == 0
        assert state.comments == {}
        assert "POST" not in [m for m, _ in state.requests]


def _run_cli(args: list[str], api_url: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GITHUB_TOKEN": token,
        "GITHUB_API_URL": api_url,
        "GITHUB_REPOSITORY": REPO,
    }
    return subprocess.run(
        [sys.executable, "-m", "llamafleet.delivery", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_bad_token_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with fake_github() as (url, state):
        body = _body(tmp_path, "x")
        done = _run_cli(
            ["upsert-comment", "--pr", "7", "--body-file", str(body)], url, token="wrong-token"
        )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"llamafleet.delivery upsert-comment: GitHub API GET /repos/{REPO}/issues/7/comments: "
        "401 Unauthorized: Bad credentials"
    ]
    assert "wrong-token" not in done.stderr
    assert state.comments == {}


def test_no_token_is_one_line(tmp_path: Path) -> None:
    with fake_github() as (url, state):
        done = _run_cli(
            ["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "x"))], url, ""
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "llamafleet.delivery upsert-comment: GITHUB_TOKEN is not set: the workflow must pass "
        "it in `env`"
    ]
    assert state.requests == []


@pytest.mark.usefixtures("env")
def test_a_server_error_is_retried_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        args = ["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "x"))]
        state.fail_with = [503, 503, 503]
        assert main(args, retry_delays=(0.0, 0.0)) == 1
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"llamafleet.delivery upsert-comment: GitHub API GET /repos/{REPO}/issues/7/comments: "
            "503 Service Unavailable: injected 503"
        ]
        assert len(state.requests) == 3  # the first try and two retries
        assert state.comments == {}

        # A passing failure: retried, then done.
        state.fail_with = [502]
        assert main(args, retry_delays=(0.0, 0.0)) == 0
        assert len(_ours(state, 7)) == 1


@pytest.mark.usefixtures("env")
def test_a_client_error_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        state.fail_with = [422]
        args = ["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "x"))]
        assert main(args, retry_delays=(0.0, 0.0)) == 1
        assert "422 Unprocessable Entity: injected 422" in capsys.readouterr().err
        assert len(state.requests) == 1


@pytest.mark.usefixtures("env")
def test_a_next_page_on_another_origin_never_gets_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        for n in range(3):
            state.add_comment(7, f"c{n}", login="alice")
        state.link_base = "http://127.0.0.2:9"
        args = ["upsert-comment", "--pr", "7", "--body-file", str(_body(tmp_path, "x"))]
        assert main(args) == 1
        assert capsys.readouterr().err.splitlines() == [
            "llamafleet.delivery upsert-comment: GitHub API: refusing to send the token to "
            f"http://127.0.0.2:9/repos/{REPO}/issues/7/comments?per_page=100&page=2"
        ]


def _drift_reports(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    cases = {
        # drifted: exit 1 with the drift line
        "aws-dev": (
            "aws-dev: would update 1\n  update   kubernetes:apps/v1:Deployment x\n",
            "drift: aws-dev would change {'update': 1}\n",
            1,
        ),
        "onprem": ("onprem: no changes\n", "", 0),
        # exit 1 without the drift line: bad settings, not drift
        "hybrid": ("", "stacks/Pulumi.hybrid.yaml: llamafleet:x: bad\n", 1),
    }
    for stack, (out, err, rc) in cases.items():
        d = reports / stack
        d.mkdir(parents=True)
        (d / "preview.out").write_text(out)
        (d / "preview.err").write_text(err)
        (d / "preview.rc").write_text(f"{rc}\n")
    return reports  # prod: no directory (its job did not finish)


@pytest.mark.usefixtures("env")
def test_drift_opens_one_issue_then_comments_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = _drift_reports(tmp_path)
    args = [
        "open-drift-issue",
        "--reports",
        str(reports),
        "--stacks",
        '["prod","hybrid","onprem","aws-dev"]',
        "--commit",
        "a" * 40,
        "--run-url",
        "https://github.test/run/1",
    ]
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        state.page_size = 1
        state.add_issue("an unrelated bug", "text", login="alice")
        state.add_issue(drift_title("aws-dev"), "a pull request, not an issue", pr=True)
        state.add_issue("Drift: someone else's", drift_marker("aws-dev"), login="mallory")

        assert main(args) == 0
        assert capsys.readouterr().out.splitlines() == [
            "aws-dev: drift; issue created https://github.test/acme/llamafleet/issues/4",
            "onprem: no drift",
            "hybrid: check failed (1)",
            "prod: no drift check result (its job did not finish)",
        ]
        assert len(state.issues) == 4
        issue = state.issues[3]
        assert issue["title"] == drift_title("aws-dev")
        assert str(issue["body"]).startswith(drift_marker("aws-dev") + "\n")
        assert "update   kubernetes:apps/v1:Deployment x" in str(issue["body"])

        assert main(args) == 0
        assert "aws-dev: drift; issue commented" in capsys.readouterr().out
        assert len(state.issues) == 4  # never a second issue
        assert [str(c["body"]).splitlines()[0] for c in state.comments[4]] == [
            f"Still drifting at main `{'a' * 12}` ([workflow run](https://github.test/run/1)): "
            "`aws-dev: would update 1`."
        ]


@pytest.mark.usefixtures("env")
def test_branch_head_says_whether_a_commit_is_still_the_newest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = "1" * 40, "2" * 40
    with fake_github() as (url, state):
        _api(monkeypatch, url)
        state.branches["main"] = new
        assert main(["branch-head", "--branch", "main"]) == 0
        assert capsys.readouterr().out == f"{new}\n"
        assert main(["branch-head", "--branch", "main", "--is", new]) == 0
        assert capsys.readouterr().out == "true\n"
        assert main(["branch-head", "--branch", "main", "--is", old]) == 0
        captured = capsys.readouterr()
        assert captured.out == "false\n"
        assert new in captured.err
        assert main(["branch-head", "--branch", "gone", "--is", old]) == 1
        assert "404 Not Found" in capsys.readouterr().err


FORK = "mallory/llamafleet"
FORK_HEAD = "c" * 40
RUN_URL = f"https://github.test/{REPO}/actions/runs/42"


def _fork_run(tmp_path: Path, number: str, body: str = "from the fork's run") -> list[str]:
    """What pr.yml's fork run leaves, and the post-fork-comment call pr-comment.yml makes."""
    left = tmp_path / "fork-comment"
    left.mkdir(exist_ok=True)
    (left / "pr-number").write_text(f"{number}\n")
    (left / "comment.md").write_text(f"{PREVIEW_MARKER}\n{body}")
    return [
        *["post-fork-comment", "--dir", str(left), "--head-repo", FORK, "--head-sha", FORK_HEAD],
        *["--run-url", RUN_URL],
    ]


def test_a_forks_comment_is_posted_on_its_own_pull_request_then_updated(tmp_path: Path) -> None:
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, FORK_HEAD)
        first = _run_cli(_fork_run(tmp_path, "12", "one"), url)
        again = _run_cli(_fork_run(tmp_path, "12", "two"), url)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "comment created" in first.stdout and "comment updated" in again.stdout
    (posted,) = [str(c["body"]) for c in _ours(state, 12)]
    banner, text = posted.removeprefix(f"{PREVIEW_MARKER}\n").split("\n\n", 1)
    assert f"[the fork's own run]({RUN_URL}) at `{FORK_HEAD}`" in banner
    assert "the fork's claim" in banner and text == "two"


def test_a_forks_comment_cannot_drop_the_banner_or_mention_anyone(tmp_path: Path) -> None:
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, FORK_HEAD)
        args = _fork_run(tmp_path, "12", "cc @acme/platform and @alice; image x@sha256:ab")
        assert _run_cli(args, url).returncode == 0
    (posted,) = [str(c["body"]) for c in _ours(state, 12)]
    assert posted.count(PREVIEW_MARKER) == 1 and "[!CAUTION]" in posted
    assert "@acme/platform" not in posted and "@alice" not in posted
    assert "@\u2060acme/platform" in posted and "x@sha256:ab" in posted


def test_a_forks_comment_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """A link in the artifact could point at what the runner holds (its environment)."""
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, FORK_HEAD)
        args = _fork_run(tmp_path, "12")
        secret = tmp_path / "elsewhere"
        secret.write_text("GITHUB_TOKEN=x")
        (tmp_path / "fork-comment" / "comment.md").unlink()
        (tmp_path / "fork-comment" / "comment.md").symlink_to(secret)
        done = _run_cli(args, url)
    assert done.returncode == 1
    assert "comment.md: " in done.stderr and state.requests == []


def test_a_forks_comment_aimed_at_another_pull_request_is_refused(tmp_path: Path) -> None:
    """The number comes from the fork's run: one naming a pull request from elsewhere (a
    member's branch, or a deleted fork) is not posted."""
    with fake_github() as (url, state):
        state.pulls[3] = (REPO, FORK_HEAD)
        state.pulls[4] = ("", FORK_HEAD)
        done = _run_cli(_fork_run(tmp_path, "3"), url)
        gone = _run_cli(_fork_run(tmp_path, "4"), url)
        # A run whose fork is gone too: an empty repository matches nothing.
        both_gone = _run_cli([*_fork_run(tmp_path, "4"), "--head-repo", ""], url)
        not_a_commit = _run_cli([*_fork_run(tmp_path, "4"), "--head-sha", "main"], url)
    assert done.returncode == 1 and gone.returncode == 1
    assert both_gone.returncode == 1 and not_a_commit.returncode == 1
    assert "is no repository and commit: not posted" in both_gone.stderr + not_a_commit.stderr
    assert done.stderr.splitlines() == [
        f"llamafleet.delivery post-fork-comment: pull request #3 comes from {REPO}, not from "
        f"{FORK}, whose run composed this comment: not posted"
    ]
    assert "comes from a deleted repository" in gone.stderr
    assert state.comments == {}


def test_a_forks_comment_for_an_older_commit_is_not_posted(tmp_path: Path) -> None:
    newer = "d" * 40
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, newer)
        done = _run_cli(_fork_run(tmp_path, "12"), url)
    assert done.returncode == 0, done.stderr
    assert f"its head is {newer} now, not the run's {FORK_HEAD}: not posted" in done.stdout
    assert state.comments == {}


@pytest.mark.parametrize("number", ["12; rm -rf /", "0", "-1", "", "1" * 11, "12\n13"])
def test_a_forks_pull_request_number_that_is_no_number_is_one_line(
    tmp_path: Path, number: str
) -> None:
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, FORK_HEAD)
        done = _run_cli(_fork_run(tmp_path, number), url)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert (
        line.startswith("llamafleet.delivery post-fork-comment: ") and "not a pull request" in line
    )
    assert state.requests == []


def test_a_forks_comment_over_githubs_limit_is_refused(tmp_path: Path) -> None:
    with fake_github() as (url, state):
        state.pulls[12] = (FORK, FORK_HEAD)
        done = _run_cli(_fork_run(tmp_path, "12", "x" * 70_000), url)
    assert done.returncode == 1
    assert "comment.md: over 65536 bytes" in done.stderr
    assert state.requests == []
