"""Post without duplicating: one preview comment per pull request, one drift issue per stack.

The comment is found by its marker (the first line of its body) among the pull request's
comments, every page of them; the drift issue by its marker, or its title, among the open issues.
`author`, when given, must also have written it (`github-actions[bot]` for the workflow's own
token), so nobody else's comment is ever taken for ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llamafleet.delivery.github import GitHub, Json


@dataclass(frozen=True)
class Posted:
    """What a post did, and where."""

    action: Literal["created", "updated", "commented", "unchanged", "none"]
    url: str


def _login(item: Json) -> str:
    user: Any = item.get("user") or {}
    return str(user.get("login", "")) if isinstance(user, dict) else ""


def _by(item: Json, author: str | None) -> bool:
    return author is None or _login(item) == author


def find_comment(github: GitHub, issue: int, marker: str, author: str | None) -> Json | None:
    """The first comment on `issue` whose body starts with `marker` (and by `author`)."""
    for comment in github.paginate(f"/issues/{issue}/comments"):
        if str(comment.get("body") or "").startswith(marker) and _by(comment, author):
            return comment
    return None


def upsert_comment(
    github: GitHub,
    issue: int,
    marker: str,
    body: str,
    *,
    author: str | None = None,
    create: bool = True,
) -> Posted:
    """Edit the comment `marker` identifies, or create it (unless `create` is False: then a
    pull request with none gets none)."""
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    existing = find_comment(github, issue, marker, author)
    if existing is not None:
        url = str(existing.get("html_url", ""))
        if existing.get("body") == body:
            return Posted("unchanged", url)
        github.patch(f"/issues/comments/{int(existing['id'])}", {"body": body})
        return Posted("updated", url)
    if not create:
        return Posted("none", "")
    made = github.post(f"/issues/{issue}/comments", {"body": body})
    return Posted("created", str(made.get("html_url", "")))


@dataclass(frozen=True)
class PullRequestHead:
    """Where a pull request's head is now: the repository (owner/name; empty when the fork was
    deleted) and the commit."""

    repo: str
    sha: str


def pull_request_head(github: GitHub, number: int) -> PullRequestHead:
    """The head of pull request `number` as GitHub reports it now (GET /pulls/{number})."""
    head: Any = github.get(f"/pulls/{number}").get("head") or {}
    if not isinstance(head, dict):
        return PullRequestHead("", "")
    repo: Any = head.get("repo") or {}
    name = str(repo.get("full_name", "")) if isinstance(repo, dict) else ""
    return PullRequestHead(name, str(head.get("sha", "")))


def find_open_issue(github: GitHub, marker: str, title: str, author: str | None) -> Json | None:
    """The open issue (not a pull request) with `marker` in its body or exactly `title`."""
    params = {"state": "open", "sort": "created", "direction": "asc"}
    for issue in github.paginate("/issues", params):
        if "pull_request" in issue or not _by(issue, author):
            continue
        if marker in str(issue.get("body") or "") or issue.get("title") == title:
            return issue
    return None


def report_drift(
    github: GitHub,
    *,
    marker: str,
    title: str,
    issue_body: str,
    comment_body: str,
    author: str | None = None,
) -> Posted:
    """Comment on the stack's open drift issue, or open one."""
    existing = find_open_issue(github, marker, title, author)
    if existing is not None:
        number = int(existing["number"])
        made = github.post(f"/issues/{number}/comments", {"body": comment_body})
        return Posted("commented", str(made.get("html_url", existing.get("html_url", ""))))
    made = github.post("/issues", {"title": title, "body": issue_body})
    return Posted("created", str(made.get("html_url", "")))
