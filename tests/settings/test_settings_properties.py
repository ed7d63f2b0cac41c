"""`validate` ok ⇒ `render` ok ⇒ every object passes the strict schemas and the policy rules.

Mutations come from the settings schema (tests/support/settings_mutations.py): every field shape
any stack file reaches, and every field the schema has that they leave unset, is mutated with
each kind (type change, deletion, unknown key, unicode, empty, boundary values, Literal choices).
Each mutation gets exactly one `<file>: llamafleet:<key path>: …` line, or it renders under the
mocks and what it renders passes the checks. Any other exception fails the test: there is no
catch-all. A Hypothesis test adds random mutations, derandomized with a bounded budget;
LLAMAFLEET_PROPERTY_EXAMPLES=2000 makes it a bigger (still reproducible) run, opt-in.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.schemas import name_errors, schema_errors
from support.settings_mutations import Leaf, Mutation, leaves, mutations, settings_keys, shape
from support.stack_renders import STACKS

from llamafleet.command.mock_run import run_program
from llamafleet.command.render import Rendered
from llamafleet.policy.rules import violations
from llamafleet.program.stack import main as program_main
from llamafleet.settings.load import SettingsError, engine_config, load_stack_file, stack_file
from llamafleet.settings.schema import Settings

# Smallest first: each shape is mutated in the cheapest stack that has it.
BY_SIZE = sorted(STACKS, key=lambda stack: stack_file(stack).stat().st_size)
LINE = re.compile(r"^(?P<file>\S+): llamafleet:(?P<path>[^:\s]*): (?P<message>\S.*)$")


@cache
def stack_config(stack: str) -> dict[str, Any]:
    return yaml.safe_load(stack_file(stack).read_text())["config"]


@cache
def stack_settings(stack: str) -> Settings:
    return load_stack_file(stack_file(stack))


def _stack_values(stack: str) -> dict[str, Any]:
    config = stack_config(stack)
    return {
        k.removeprefix("llamafleet:"): v for k, v in config.items() if k.startswith("llamafleet:")
    }


@cache
def first_leaf_of_each_shape() -> dict[str, tuple[str, Leaf]]:
    found: dict[str, tuple[str, Leaf]] = {}
    for stack in BY_SIZE:
        for leaf in leaves(_stack_values(stack)):
            found.setdefault(shape(leaf.path), (stack, leaf))
    return found


@cache
def all_mutations() -> tuple[Mutation, ...]:
    return tuple(
        mutation
        for stack in BY_SIZE
        for leaf in leaves(_stack_values(stack))
        for mutation in mutations(stack, leaf)
    )


@cache
def _schema_errors(obj_json: str) -> tuple[str, ...]:
    # Most objects of a mutated stack equal the unmutated ones: check each distinct one once.
    obj = json.loads(obj_json)
    return (*schema_errors(obj), *name_errors(obj))


def check(mutation: Mutation, tmp_path: Path) -> str:
    """'refused' (one clear line), 'unchanged' (same settings as the stack file), or 'rendered'
    (rendered, every object valid, no policy violation); any other outcome fails."""
    config = mutation.apply(stack_config(mutation.stack))
    file = tmp_path / f"Pulumi.{mutation.stack}.yaml"
    file.write_text(yaml.safe_dump({"config": config}, allow_unicode=True))
    try:
        settings_ = load_stack_file(file)
    except SettingsError as exc:
        lines = str(exc).splitlines()
        assert len(lines) == 1, f"{mutation}: {len(lines)} lines:\n" + "\n".join(lines)
        match = LINE.match(lines[0])
        assert match is not None, f"{mutation}: not one clear line: {lines[0]!r}"
        assert match["file"] == str(file), lines[0]
        return "refused"
    if settings_ == stack_settings(mutation.stack):
        return "unchanged"
    objects = Rendered(
        run_program(program_main, mutation.stack, engine_config(file))
    ).kubernetes_objects
    invalid = {
        f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata'].get('name')}": errors
        for o in objects
        if (errors := _schema_errors(json.dumps(o, sort_keys=True)))
    }
    assert invalid == {}, (
        f"{mutation}: validate ok, but rendered objects fail their schemas or name rules"
    )
    assert violations(objects) == [], f"{mutation}: validate ok, but the policy rules fail"
    return "rendered"


@pytest.mark.parametrize("field_shape", list(first_leaf_of_each_shape()))
def test_every_field_mutated_is_refused_in_one_line_or_renders_valid(
    field_shape: str, tmp_path: Path
) -> None:
    stack, leaf = first_leaf_of_each_shape()[field_shape]
    outcomes = {str(m): check(m, tmp_path) for m in mutations(stack, leaf)}
    # Every field can be got wrong: at least one mutation of each is refused.
    assert "refused" in outcomes.values(), outcomes


def test_the_sweep_reaches_every_field_of_the_schema() -> None:
    """Every field of every settings model is on some shape's path (the sweep's coverage)."""
    reached = {part for s in first_leaf_of_each_shape() for part in s.split(".")}
    assert settings_keys() - reached == set()


REVIEW_INPUTS = [
    # Review 2, §1.2a: validate said ok, render died with a traceback.
    Mutation("prod", ("modelStore", "region"), "EU-West-1", "review"),
    Mutation(
        "onprem", ("modelStore", "endpointUrl"), "https://key:secret@s3.dc1.example", "review"
    ),
    # §1.2b: the port restated beside the URL.
    Mutation("local", ("modelStore", "endpointPort"), 9000, "review"),
]


@pytest.mark.parametrize("mutation", REVIEW_INPUTS, ids=str)
def test_the_review_inputs_are_refused_in_one_line(mutation: Mutation, tmp_path: Path) -> None:
    assert check(mutation, tmp_path) == "refused"


EXAMPLES = int(os.environ.get("LLAMAFLEET_PROPERTY_EXAMPLES", "40"))


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=st.sampled_from(all_mutations()))
@example(mutation=REVIEW_INPUTS[0])
@example(mutation=REVIEW_INPUTS[1])
def test_random_mutations_are_refused_in_one_line_or_render_valid(
    mutation: Mutation, tmp_path: Path
) -> None:
    assert check(mutation, tmp_path) in ("refused", "unchanged", "rendered")
