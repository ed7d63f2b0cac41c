"""The texts the workflows post: a pull request's preview comment and a stack's drift issue.

Each starts with a hidden HTML marker, so a rerun finds what an earlier run posted and edits it
(the comment) or comments on it (the issue) instead of posting another.
"""

from __future__ import annotations

from collections.abc import Sequence

from llamafleet.delivery.markdown import BUDGET, LIMIT, Banner, Block, Part, compose
from llamafleet.delivery.reports import Capture, StackReport
from llamafleet.delivery.stacks import NO_ENGINE_RUN

PREVIEW_MARKER = "<!-- llamafleet-preview -->"
# Lines of a failed command's stderr shown.
ERROR_LINES = 30


def drift_marker(stack: str) -> str:
    """The hidden line that identifies a stack's drift issue."""
    return f"<!-- llamafleet-drift: {stack} -->"


def drift_title(stack: str) -> str:
    """A drift issue's title."""
    return f"Drift: stack {stack} differs from main"


def _short(commit: str) -> str:
    return f"`{commit[:12]}`" if commit else "`?`"


def _run_link(run_url: str | None) -> str:
    return f" ([workflow run]({run_url}))" if run_url else ""


def _first_line(text: str, prefix: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if line.startswith(prefix)), None)


def _tail(text: str, lines: int = ERROR_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _cut_banner() -> Banner:
    return Banner(
        f"> [!NOTE]\n> Some output below was cut to fit GitHub's {LIMIT}-character limit for a "
        "comment; the workflow run's artifacts hold all of it.\n\n"
    )


def _preview_parts(report: StackReport, skipped: str | None) -> list[Part]:
    stack, capture = report.stack, report.preview
    reason = NO_ENGINE_RUN.get(stack) or skipped
    if reason is not None and capture is None:
        return [f"**Engine preview**: not run: {reason}.\n\n"]
    if capture is None:
        return [
            "**Engine preview**: :warning: no result "
            "(the preview job did not run or did not finish).\n\n"
        ]
    if capture.rc != 0:
        parts: list[Part] = [f"**Engine preview**: :x: failed (exit status {capture.rc}).\n\n"]
        if capture.err.strip():
            parts.append(Block(f"errors: {stack}", _tail(capture.err)))
        if capture.out.strip():
            parts.append(Block(f"engine output: {stack}", capture.out))
        return parts
    headline = _first_line(capture.out, f"{stack}: ") or "done"
    return [
        f"**Engine preview** (`llamafleet preview {stack}`): `{headline}`\n\n",
        Block(f"engine diff: {stack}", capture.out, "diff"),
    ]


def _render_parts(report: StackReport) -> list[Part]:
    stack, diff = report.stack, report.render
    if report.render_error is not None:
        return [
            "**Rendered objects**: :x: no diff.\n\n",
            Block(f"render errors: {stack}", _tail(report.render_error)),
        ]
    if diff is None:
        return [
            "**Rendered objects**: :warning: no result "
            "(the render job did not run or did not finish).\n\n"
        ]
    if diff.empty:
        return ["**Rendered objects** (`llamafleet render`, base → head): no change.\n\n"]
    return [
        f"**Rendered objects** (`llamafleet render`, base → head): {diff.summary()}.\n\n",
        Block(f"rendered-object diff: {stack}", diff.diff, "diff"),
    ]


def preview_comment(
    reports: Sequence[StackReport],
    *,
    base: str,
    head: str,
    run_url: str | None = None,
    preview_skipped: str | None = None,
    budget: int = BUDGET,
) -> str:
    """The pull request's one comment: per affected stack, the engine's diff and the diff of
    the rendered objects. `preview_skipped` says why no stack got an engine preview (a fork)."""
    parts: list[Part] = [
        f"{PREVIEW_MARKER}\n## llamafleet preview\n\n",
        f"Head {_short(head)} against base {_short(base)}{_run_link(run_url)}.\n\n",
        _cut_banner(),
    ]
    if not reports:
        parts.append(
            "No stack is affected: this change touches no program, settings or stack file.\n"
        )
        return compose(parts, budget)
    names = ", ".join(f"`{r.stack}`" for r in reports)
    parts.append(f"Stacks this change affects: {names}.\n\n")
    for report in reports:
        parts.append(f"### `{report.stack}`\n\n")
        parts.extend(_preview_parts(report, preview_skipped))
        parts.extend(_render_parts(report))
    return compose(parts, budget)


def drift_issue_body(
    capture: Capture, stack: str, *, commit: str, run_url: str | None, budget: int = BUDGET
) -> str:
    """A new drift issue: the marker, what was found, the engine's output."""
    return compose(
        [
            f"{drift_marker(stack)}\n",
            f"`llamafleet preview {stack} --expect-no-changes` found changes at main "
            f"{_short(commit)}{_run_link(run_url)}: the stack is not what main's program and "
            "settings declare (a change made outside Pulumi, or a deploy that did not finish). "
            f"`llamafleet up {stack}` from main puts it back; close this issue once it did.\n\n",
            _cut_banner(),
            Block(f"engine diff: {stack}", capture.out, "diff"),
        ],
        budget,
    )


def drift_comment_body(
    capture: Capture, stack: str, *, commit: str, run_url: str | None, budget: int = BUDGET
) -> str:
    """A comment on the open drift issue: still drifting, with today's output."""
    headline = _first_line(capture.out, f"{stack}: ") or "changes"
    return compose(
        [
            f"Still drifting at main {_short(commit)}{_run_link(run_url)}: `{headline}`.\n\n",
            _cut_banner(),
            Block(f"engine diff: {stack}", capture.out, "diff"),
        ],
        budget,
    )
