"""`llamafleet/command/mock_run.py` stands on Pulumi SDK internals (review 2, §1.1e): `render` and
most tests need them. This fails loudly, naming the piece, when an SDK upgrade moves one, instead
of every mock test failing at once for no clear reason."""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from pathlib import Path

import pulumi
from pulumi.runtime import mocks, settings, stack, sync_await

from llamafleet.command.mock_run import run_program

ROOT = Path(__file__).resolve().parents[2]


def test_the_sdk_is_the_pinned_one() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert importlib.metadata.version("pulumi") == pins["pulumi"].split()[0]


def test_the_internals_mock_run_uses_are_there() -> None:
    assert callable(sync_await._sync_await)  # pyright: ignore[reportPrivateUsage]
    assert callable(stack.run_pulumi_func)
    assert hasattr(settings, "ROOT") and hasattr(settings.ROOT, "set")
    assert isinstance(settings.SETTINGS.outputs, set)  # pyright: ignore[reportAttributeAccessIssue]
    assert callable(mocks.MockMonitor.RegisterResource)


def test_a_program_runs_and_its_resource_options_are_recorded() -> None:
    def program() -> None:
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        first = pulumi.CustomResource("test:index:Thing", "first", {})
        pulumi.CustomResource(
            "test:index:Thing",
            "thing",
            {"size": 2},
            opts=pulumi.ResourceOptions(
                parent=parent, protect=True, ignore_changes=["size"], depends_on=[first]
            ),
        )

    declared = {d.name: d for d in run_program(program, "test", {})}
    thing = declared["thing"]
    assert thing.inputs == {"size": 2}
    assert thing.parent == declared["parent"].urn
    assert (thing.protect, thing.ignore_changes) == (True, ("size",))
    assert thing.depends_on == (declared["first"].urn,)


def test_a_run_does_not_wait_on_outputs_another_program_left() -> None:
    """A test module's own `set_mocks` program can leave an output pending on its loop; a
    later run_program must not wait on it (it did, forever, under xdist)."""
    other_loop = asyncio.new_event_loop()
    stale = other_loop.create_future()  # never resolved
    settings.SETTINGS.outputs.add(stale)  # pyright: ignore[reportAttributeAccessIssue]
    done: list[int] = []
    worker = threading.Thread(
        target=lambda: done.append(len(run_program(lambda: None, "test", {}))), daemon=True
    )
    worker.start()
    worker.join(timeout=60)
    other_loop.close()
    assert not worker.is_alive(), "run_program waited on another loop's output"
    assert done == [0]
