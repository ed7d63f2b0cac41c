"""Shared fixtures: every stack file, rendered once per session (tests/support/stack_renders.py).

Under CI=true a skipped test fails the run, unless its reason is one tests/support/skips.py allows:
`.ci/run` installs and builds every tool a test needs, so a skip there means a test did not run.
"""

from __future__ import annotations

import os

import pytest
from support.skips import OPTIONAL
from support.stack_renders import STACKS, rendered_stack

from llamafleet.command.render import Rendered


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(stack: str) -> Rendered:
    return rendered_stack(stack)


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        if not reason.removeprefix("Skipped: ").startswith(OPTIONAL):
            _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") == "true" and _SKIPPED and exitstatus == 0:
        print("\nCI=true: these tests skipped although CI provides what they need:", flush=True)
        for line in _SKIPPED:
            print(f"  {line}", flush=True)
        session.exitstatus = 1
