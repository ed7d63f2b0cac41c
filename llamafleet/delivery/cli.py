"""`python -m llamafleet.delivery <subcommand>`: the scripts the GitHub workflows call.

Every failure is one line on stderr, `llamafleet.delivery <subcommand>: <what>`, and exit
status 1 (2 for a usage error). GitHub calls read `GITHUB_TOKEN` (never an argument),
`GITHUB_API_URL` and `GITHUB_REPOSITORY` from the environment, as Actions sets them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from llamafleet.delivery import bodies
from llamafleet.delivery.affected import affected_between
from llamafleet.delivery.errors import DeliveryError
from llamafleet.delivery.fork_comment import (
    COMMIT,
    FORK_COMMENT,
    FORK_PR_NUMBER,
    PR_NUMBER,
    fork_comment,
    read_untrusted,
)
from llamafleet.delivery.github import DEFAULT_API_URL, RETRY_DELAYS, GitHub
from llamafleet.delivery.posting import pull_request_head, report_drift, upsert_comment
from llamafleet.delivery.render_diff import diff_renders
from llamafleet.delivery.render_pair import render_pair
from llamafleet.delivery.reports import PREVIEW, capture, load_report
from llamafleet.delivery.stacks import ordered, preview_matrix

Handler = Callable[[argparse.Namespace], int]
PROG = "llamafleet.delivery"
BOT = "github-actions[bot]"


def _out(text: str, path: Path | None) -> None:
    if path is None:
        sys.stdout.write(text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _stacks(text: str) -> list[str]:
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in cast("list[Any]", value)):
        raise DeliveryError(f"--stacks: not a JSON list of stack names: {text!r}")
    return ordered(cast("list[str]", value))


def _affected(args: argparse.Namespace) -> int:
    stacks = affected_between(args.repo, args.base, args.head)
    value: object = preview_matrix(stacks) if args.matrix else stacks
    print(json.dumps(value, separators=(",", ":")))
    return 0


def _render_diff(args: argparse.Namespace) -> int:
    diff = diff_renders(args.base, args.head)
    _out(diff.to_json(), args.out)
    print(diff.summary(), file=sys.stderr)
    return 0


def _render_pair(args: argparse.Namespace) -> int:
    command = shlex.split(args.render_command) if args.render_command else None
    diff = render_pair(
        args.repo,
        args.stack,
        args.base,
        args.out,
        command or [sys.executable, "-m", "llamafleet", "render"],
    )
    print(f"{args.stack}: {'no diff' if diff is None else diff.summary()}")
    return 0


def _capture(args: argparse.Namespace) -> int:
    argv: list[str] = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise DeliveryError("no command given after --")
    return capture(args.dir, args.name, argv)


def _comment_body(args: argparse.Namespace) -> int:
    reports = [load_report(args.reports, s) for s in _stacks(args.stacks)]
    body = bodies.preview_comment(
        reports,
        base=args.base,
        head=args.head,
        run_url=args.run_url,
        preview_skipped=args.preview_skipped,
    )
    _out(body, args.out)
    return 0


def _github(args: argparse.Namespace) -> GitHub:
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY", "")
    return GitHub(
        token=os.environ.get("GITHUB_TOKEN", ""),
        repo=repo,
        api_url=os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL,
        retry_delays=args.retry_delays,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def _upsert_comment(args: argparse.Namespace) -> int:
    body = _read(args.body_file)
    posted = upsert_comment(
        _github(args),
        args.pr,
        args.marker,
        body,
        author=args.author or None,
        create=not args.update_only,
    )
    print(f"pull request #{args.pr}: comment {posted.action} {posted.url}".rstrip())
    return 0


# The comment a fork's pull request run composed, posted by the `workflow_run` that follows it:
# its files are untrusted data (fork_comment); the number must name the pull request whose head
# is the run's own repository and commit, as GitHub reports them.
def _post_fork_comment(args: argparse.Namespace) -> int:
    if not args.head_repo or not COMMIT.fullmatch(args.head_sha):
        raise DeliveryError(
            f"the run's head ({args.head_repo or 'no repository'} at {args.head_sha!r}) is no "
            "repository and commit: not posted"
        )
    text = read_untrusted(args.dir / FORK_PR_NUMBER, limit=64).strip()
    if not PR_NUMBER.fullmatch(text):
        raise DeliveryError(
            f"{args.dir / FORK_PR_NUMBER}: not a pull request number: {text[:40]!r}"
        )
    number = int(text)
    body = fork_comment(read_untrusted(args.dir / FORK_COMMENT), args.run_url, args.head_sha)
    github = _github(args)
    head = pull_request_head(github, number)
    if head.repo != args.head_repo:
        raise DeliveryError(
            f"pull request #{number} comes from {head.repo or 'a deleted repository'}, not from "
            f"{args.head_repo}, whose run composed this comment: not posted"
        )
    if head.sha != args.head_sha:
        print(
            f"pull request #{number}: its head is {head.sha} now, not the run's {args.head_sha}: "
            "not posted (the newer commit's run posts its own)"
        )
        return 0
    posted = upsert_comment(github, number, bodies.PREVIEW_MARKER, body, author=args.author or None)
    print(f"pull request #{number}: comment {posted.action} {posted.url}".rstrip())
    return 0


def _open_drift_issue(args: argparse.Namespace) -> int:
    github = _github(args)
    for stack in _stacks(args.stacks):
        report = load_report(args.reports, stack)
        if report.preview is None:
            print(f"{stack}: no drift check result (its job did not finish)")
            continue
        if not report.drifted:
            state = "no drift" if report.preview.rc == 0 else f"check failed ({report.preview.rc})"
            print(f"{stack}: {state}")
            continue
        where = {"commit": args.commit, "run_url": args.run_url}
        posted = report_drift(
            github,
            marker=bodies.drift_marker(stack),
            title=bodies.drift_title(stack),
            issue_body=bodies.drift_issue_body(report.preview, stack, **where),
            comment_body=bodies.drift_comment_body(report.preview, stack, **where),
            author=args.author or None,
        )
        print(f"{stack}: drift; issue {posted.action} {posted.url}".rstrip())
    return 0


def _branch_head(args: argparse.Namespace) -> int:
    branch = _github(args).get(f"/branches/{urllib.parse.quote(args.branch, safe='')}")
    commit: Any = branch.get("commit") or {}
    sha = str(commit.get("sha", "")) if isinstance(commit, dict) else ""
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise DeliveryError(f"branch {args.branch}: no commit in GitHub's answer")
    if args.is_commit is None:
        print(sha)
    elif sha == args.is_commit:
        print("true")
    else:
        print("false")
        print(f"::notice::{args.branch} is at {sha} now: its own run deploys it", file=sys.stderr)
    return 0


def _add_github_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", help="owner/name (default: $GITHUB_REPOSITORY)")
    parser.add_argument(
        "--author",
        default=BOT,
        help=f"only what this login wrote counts as ours (default {BOT}; '' for anyone)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand each, its handler in the `handler` default."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("affected-stacks", help="JSON list of the stacks a change affects")
    p.add_argument("--base", required=True, help="base commit")
    p.add_argument("--head", required=True, help="head commit")
    p.add_argument("--repo", type=Path, default=Path(), help="the git checkout (default: .)")
    p.add_argument(
        "--matrix",
        action="store_true",
        help="print a job matrix's include list of the stacks CI previews, with their runners",
    )
    p.set_defaults(handler=_affected)

    p = commands.add_parser("render-diff", help="diff two `llamafleet render` directories")
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--head", type=Path, required=True)
    p.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    p.set_defaults(handler=_render_diff)

    p = commands.add_parser("render-pair", help="render a stack at the checkout and at --base")
    p.add_argument("--stack", required=True)
    p.add_argument("--base", required=True, help="base commit")
    p.add_argument("--out", type=Path, required=True, help="directory for the stack's report")
    p.add_argument("--repo", type=Path, default=Path(), help="the git checkout (default: .)")
    p.add_argument(
        "--render-command",
        help="the render command, before `<stack> --out DIR` (default: this Python's "
        "`-m llamafleet render`)",
    )
    p.set_defaults(handler=_render_pair)

    p = commands.add_parser(
        "capture", help="run a command, recording stdout, stderr and exit status; exit with it"
    )
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--name", default=PREVIEW)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    p.set_defaults(handler=_capture)

    p = commands.add_parser("comment-body", help="compose the pull request's preview comment")
    p.add_argument("--reports", type=Path, required=True, help="one directory per stack")
    p.add_argument("--stacks", required=True, help="JSON list (affected-stacks' output)")
    p.add_argument("--base", required=True)
    p.add_argument("--head", required=True)
    p.add_argument("--run-url")
    p.add_argument("--preview-skipped", help="why no stack got an engine preview")
    p.add_argument("--out", type=Path, help="default: stdout")
    p.set_defaults(handler=_comment_body)

    _add_github_commands(commands)
    return parser


def _add_github_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],  # pyright: ignore[reportPrivateUsage]
) -> None:
    p = commands.add_parser("upsert-comment", help="create or edit the pull request's comment")
    p.add_argument("--pr", type=int, required=True, help="pull request number")
    p.add_argument("--body-file", type=Path, required=True)
    p.add_argument("--marker", default=bodies.PREVIEW_MARKER)
    p.add_argument(
        "--update-only", action="store_true", help="edit an existing comment, never create one"
    )
    _add_github_options(p)
    p.set_defaults(handler=_upsert_comment)

    p = commands.add_parser(
        "post-fork-comment",
        help="post a fork's preview comment from its run's files, once GitHub confirms the pull "
        "request's head is that run's repository and commit",
    )
    p.add_argument(
        "--dir", type=Path, required=True, help=f"{FORK_PR_NUMBER} and {FORK_COMMENT} are here"
    )
    p.add_argument("--head-repo", required=True, help="the run's head repository (owner/name)")
    p.add_argument("--head-sha", required=True, help="the run's head commit")
    p.add_argument("--run-url", required=True, help="the fork's run, linked in the comment")
    _add_github_options(p)
    p.set_defaults(handler=_post_fork_comment)

    p = commands.add_parser(
        "branch-head", help="the commit a branch points at now (deploys skip a superseded one)"
    )
    p.add_argument("--branch", default="main")
    p.add_argument(
        "--is",
        dest="is_commit",
        metavar="SHA",
        help="print true if the branch is at SHA, else false",
    )
    p.add_argument("--repo", help="owner/name (default: $GITHUB_REPOSITORY)")
    p.set_defaults(handler=_branch_head)

    p = commands.add_parser(
        "open-drift-issue", help="open (or comment on) a drift issue per drifted stack"
    )
    p.add_argument("--reports", type=Path, required=True, help="one directory per stack")
    p.add_argument("--stacks", required=True, help="JSON list of the stacks checked")
    p.add_argument("--commit", required=True, help="the commit checked")
    p.add_argument("--run-url")
    _add_github_options(p)
    p.set_defaults(handler=_open_drift_issue)


def main(argv: Sequence[str] | None = None, *, retry_delays: Sequence[float] = RETRY_DELAYS) -> int:
    """Run one subcommand; its exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    args.retry_delays = tuple(retry_delays)
    handler: Handler = args.handler
    try:
        return handler(args)
    except DeliveryError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG} {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
