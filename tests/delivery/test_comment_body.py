"""comment-body: the marker, one section per stack with the engine diff and the rendered-object
diff in collapsible blocks, and bodies that stay under GitHub's limit however much output there
is (cut with a note that says so). Also render-diff's comparison of two render directories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llamafleet.delivery.bodies import PREVIEW_MARKER, drift_issue_body, preview_comment
from llamafleet.delivery.cli import main
from llamafleet.delivery.markdown import BUDGET, LIMIT, Block, compose, size
from llamafleet.delivery.render_diff import RenderDiff, diff_renders
from llamafleet.delivery.reports import Capture, StackReport, load_report

BASE, HEAD = "b" * 40, "h" * 40
PREVIEW_OUT = (
    "Previewing update (aws-dev):\n"
    "  ~ kubernetes:apps/v1:Deployment team-a/qwen updated ([diff: ~spec])\n"
    "aws-dev: would update 1\n"
    "  update   kubernetes:apps/v1:Deployment qwen\n"
)


def _render(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _diff(tmp_path: Path) -> RenderDiff:
    base = _render(
        tmp_path / "base",
        {
            "team-a/Deployment-qwen.yaml": "kind: Deployment\nreplicas: 1\n",
            "team-a/Service-old.yaml": "kind: Service\n",
            "resources.json": "[1]\n",
        },
    )
    head = _render(
        tmp_path / "head",
        {
            "team-a/Deployment-qwen.yaml": "kind: Deployment\nreplicas: 2\n",
            "_cluster/Namespace-team-b.yaml": "kind: Namespace\n",
            "resources.json": "[1]\n",
        },
    )
    return diff_renders(base, head)


def test_render_diff_lists_added_removed_and_changed_objects(tmp_path: Path) -> None:
    diff = _diff(tmp_path)
    assert diff.added == ("_cluster/Namespace-team-b.yaml",)
    assert diff.removed == ("team-a/Service-old.yaml",)
    assert diff.changed == ("team-a/Deployment-qwen.yaml",)
    assert diff.summary() == (
        "objects: 1 changed, 1 added, 1 removed; declared resources (resources.json): same"
    )
    assert "--- a/team-a/Deployment-qwen.yaml\n+++ b/team-a/Deployment-qwen.yaml\n" in diff.diff
    assert "-replicas: 1\n+replicas: 2\n" in diff.diff
    assert "--- /dev/null\n+++ b/_cluster/Namespace-team-b.yaml\n" in diff.diff
    assert "--- a/team-a/Service-old.yaml\n+++ /dev/null\n" in diff.diff
    assert RenderDiff.from_json(diff.to_json(), "x") == diff
    # A stack new at the head: its base is no directory, every object is added.
    new = diff_renders(tmp_path / "absent", tmp_path / "head")
    assert new.removed == () and new.changed == () and len(new.added) == 3
    assert new.diff.index("resources.json") > new.diff.index("Namespace-team-b")  # last


def test_render_diff_command_writes_json(tmp_path: Path) -> None:
    _diff(tmp_path)
    out = tmp_path / "r" / "render.json"
    args = ["render-diff", "--base", str(tmp_path / "base"), "--head", str(tmp_path / "head")]
    assert main([*args, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["changed"] == ["team-a/Deployment-qwen.yaml"]


def _stack(name: str, *, preview: Capture | None, render: RenderDiff | None) -> StackReport:
    return StackReport(name, render, None, preview)


def test_the_comment_starts_with_the_marker_and_has_a_section_per_stack(tmp_path: Path) -> None:
    diff = _diff(tmp_path)
    body = preview_comment(
        [
            _stack("aws-dev", preview=Capture(PREVIEW_OUT, "", 0), render=diff),
            _stack(
                "onprem",
                preview=Capture("", "llamafleet preview onprem: engine: boom\n", 2),
                render=diff,
            ),
            _stack("hybrid", preview=None, render=None),
            _stack("local", preview=None, render=RenderDiff((), (), (), "")),
        ],
        base=BASE,
        head=HEAD,
        run_url="https://github.test/acme/llamafleet/actions/runs/9",
    )
    assert body.splitlines()[0] == PREVIEW_MARKER
    assert body.count(PREVIEW_MARKER) == 1
    assert (
        "Head `hhhhhhhhhhhh` against base `bbbbbbbbbbbb` ([workflow run](https://github.test/acme/llamafleet/actions/runs/9))"
        in body
    )
    assert "Stacks this change affects: `aws-dev`, `onprem`, `hybrid`, `local`." in body
    sections = re.split(r"^### ", body, flags=re.MULTILINE)[1:]
    assert [s.splitlines()[0] for s in sections] == ["`aws-dev`", "`onprem`", "`hybrid`", "`local`"]
    aws, onprem, hybrid, local = sections
    assert "**Engine preview** (`llamafleet preview aws-dev`): `aws-dev: would update 1`" in aws
    assert "<details><summary>engine diff: aws-dev</summary>\n\n```diff\nPreviewing update" in aws
    assert "<details><summary>rendered-object diff: aws-dev</summary>" in aws
    assert "-replicas: 1\n+replicas: 2\n" in aws
    assert aws.count("<details>") == aws.count("</details>") == 2
    assert "failed (exit status 2)" in onprem
    assert "llamafleet preview onprem: engine: boom" in onprem
    assert "no result (the preview job did not run or did not finish)" in hybrid
    assert "no result (the render job did not run or did not finish)" in hybrid
    assert "not run: the local stack runs against a local control plane" in local
    assert "no change." in local
    assert "Cut to fit" not in body and "[!NOTE]" not in body


def test_a_fork_gets_the_render_diff_and_says_why_there_is_no_preview(tmp_path: Path) -> None:
    body = preview_comment(
        [_stack("prod", preview=None, render=_diff(tmp_path))],
        base=BASE,
        head=HEAD,
        preview_skipped="a pull request from a fork gets no cloud credentials",
    )
    assert (
        "**Engine preview**: not run: a pull request from a fork gets no cloud credentials." in body
    )
    assert "+replicas: 2" in body


def test_no_affected_stack_says_so() -> None:
    body = preview_comment([], base=BASE, head=HEAD)
    assert body.startswith(PREVIEW_MARKER + "\n")
    assert "No stack is affected" in body


def _huge(
    lines: int, text: str = "+  image: registry.example/llama-server@sha256:0123456789abcdef"
) -> str:
    return "".join(f"{text} {n}\n" for n in range(lines))


@pytest.mark.parametrize("line", ["+ ascii line of a diff", "+ 模型 🦙 ünïcödé line"])
def test_huge_output_is_cut_under_githubs_limit_with_a_note(line: str) -> None:
    small = "aws-dev: would update 1\n"
    reports = [
        _stack(
            "aws-dev",
            preview=Capture(small, "", 0),
            render=RenderDiff((), (), ("a",), _huge(40_000, line)),
        ),
        _stack(
            "prod",
            preview=Capture(_huge(30_000, line), "", 0),
            render=RenderDiff((), (), ("b",), _huge(50_000, line)),
        ),
    ]
    body = preview_comment(reports, base=BASE, head=HEAD)
    assert size(body) <= BUDGET < LIMIT
    assert len(body) <= LIMIT
    assert body.splitlines()[0] == PREVIEW_MARKER
    assert "> [!NOTE]\n> Some output below was cut to fit GitHub's 65536-character limit" in body
    notes = re.findall(r"_Cut to fit the comment: (\d+) of (\d+) lines shown\._", body)
    assert [int(total) for _, total in notes] == [40_000, 30_000, 50_000]
    assert all(0 < int(shown) < int(total) for shown, total in notes)
    # The small block is whole, and every block is still closed.
    assert f"```diff\n{small}```" in body
    assert body.count("<details>") == body.count("</details>") == 4
    assert body.count("```") % 2 == 0
    # The three big blocks share the room about evenly.
    shown = [int(s) for s, _ in notes]
    assert max(shown) - min(shown) <= max(shown) // 10


def test_backticks_and_terminal_colours_cannot_break_the_markdown() -> None:
    text = "\x1b[32m+ added\x1b[0m\n```\n</details>\nend\r\n"
    body = compose(["head\n", Block("s", text, "diff"), "tail\n"])
    assert "\x1b" not in body and "\r" not in body
    assert "````diff\n+ added\n```\n</details>\nend\n````\n" in body
    assert body.endswith("</details>\n\ntail\n")


def test_a_block_whose_first_line_is_too_long_is_cut_inside_it() -> None:
    body = compose([Block("s", "x" * 100_000)], budget=5_000)
    assert size(body) <= 5_000
    assert "_Cut to fit the comment: 1 of 1 lines shown._" in body


def test_the_drift_issue_body_starts_with_its_marker() -> None:
    body = drift_issue_body(Capture(_huge(100_000), "", 1), "prod", commit=HEAD, run_url=None)
    assert body.startswith("<!-- llamafleet-drift: prod -->\n")
    assert size(body) <= BUDGET
    assert "Cut to fit the comment" in body


def test_comment_body_command_reads_the_jobs_reports(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    _diff(tmp_path)
    (reports / "aws-dev").mkdir(parents=True)
    assert (
        main(
            [
                "render-diff",
                "--base",
                str(tmp_path / "base"),
                "--head",
                str(tmp_path / "head"),
                "--out",
                str(reports / "aws-dev" / "render.json"),
            ]
        )
        == 0
    )
    assert main(["capture", "--dir", str(reports / "aws-dev"), "--", "printf", PREVIEW_OUT]) == 0
    (reports / "prod").mkdir()
    (reports / "prod" / "render-error.txt").write_text(
        "the head commit's render failed: exit status 1\nboom\n"
    )
    # capture exits with the command's status, and records it.
    assert (
        main(
            [
                "capture",
                "--dir",
                str(reports / "prod"),
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ]
        )
        == 3
    )
    assert load_report(reports, "prod").preview == Capture("out\n", "err\n", 3)

    out = tmp_path / "comment.md"
    args = ["comment-body", "--reports", str(reports), "--stacks", '["prod","aws-dev"]']
    assert main([*args, "--base", BASE, "--head", HEAD, "--out", str(out)]) == 0
    body = out.read_text()
    assert body.index("### `aws-dev`") < body.index("### `prod`")  # deploy order
    assert "`aws-dev: would update 1`" in body
    assert "+replicas: 2" in body
    assert "failed (exit status 3)" in body and "boom" in body


def test_comment_body_refuses_a_stack_list_that_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "comment-body",
        "--reports",
        str(tmp_path),
        "--stacks",
        "aws-dev",
        "--base",
        "b",
        "--head",
        "h",
    ]
    assert main(args) == 1
    assert capsys.readouterr().err.splitlines() == [
        "llamafleet.delivery comment-body: --stacks: not a JSON list of stack names: 'aws-dev'"
    ]
