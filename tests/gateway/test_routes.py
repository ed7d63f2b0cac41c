"""The plugin's routing table and its choices: tier order, spill-over, the max_tokens cap."""

from __future__ import annotations

import pytest

from llamafleet_gateway.routes import (
    ModelRoute,
    Routes,
    RoutesError,
    TeamRoute,
    TierRoute,
    capped_max_tokens,
    choose_tier,
    group_name,
)

FIRST = TierRoute("cpu", group_name("a", "m", "cpu"), capacity=2)
SECOND = TierRoute("gpu", group_name("a", "m", "gpu"), capacity=1)
ROUTE = ModelRoute(max_tokens=64, tiers=(FIRST, SECOND))


def test_a_request_goes_to_the_first_tier_while_it_has_room() -> None:
    assert choose_tier(ROUTE, {}) == (FIRST, False)
    assert choose_tier(ROUTE, {FIRST.group: 1}) == (FIRST, False)


def test_it_spills_to_the_next_tier_only_when_the_first_is_full() -> None:
    assert choose_tier(ROUTE, {FIRST.group: 2}) == (SECOND, True)


def test_when_every_tier_is_full_it_waits_in_the_first_tiers_queue() -> None:
    assert choose_tier(ROUTE, {FIRST.group: 2, SECOND.group: 1}) == (FIRST, False)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, 64),
        (10, 10),
        (64, 64),
        (65, 64),
        (10_000, 64),
        (0, 64),
        (-5, 64),
        (True, 64),
        ("12", 64),
        (12.5, 64),
    ],
)
def test_max_tokens_is_capped_and_set_when_omitted(requested: object, expected: int) -> None:
    assert capped_max_tokens(requested, 64) == expected


def test_the_table_round_trips_through_json() -> None:
    routes = Routes({"a": TeamRoute({"m": ROUTE}, requests_per_minute=5, tokens_per_minute=None)})
    text = routes.to_json()
    assert Routes.from_json(text) == routes
    assert text == Routes.from_json(text).to_json()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "malformed routes"),
        ('{"format": 2, "teams": {}}', "routes format 2"),
        ('{"format": 1}', "malformed routes: KeyError"),
        ('{"format": 1, "teams": {"a": {"models": {"m": {"maxTokens": 1}}}}}', "KeyError"),
        (
            '{"format": 1, "teams": {"a": {"models": {"m": {"maxTokens": 1, "tiers": []}}}}}',
            "a model has no tier",
        ),
        ('{"format": 1, "teams": []}', "malformed routes"),
    ],
)
def test_a_malformed_table_is_one_clear_error(text: str, why: str) -> None:
    with pytest.raises(RoutesError, match=why) as raised:
        Routes.from_json(text)
    assert "\n" not in str(raised.value)


def test_a_peer_tier_round_trips_and_is_never_served_to_a_peer() -> None:
    table = Routes(
        {
            "a": TeamRoute(
                {
                    "m": ModelRoute(
                        64,
                        (TierRoute("here", "a/m/here", 2), TierRoute("there", "a/m/there", 4, "b")),
                    )
                }
            )
        }
    )
    parsed = Routes.from_json(table.to_json())
    assert parsed == table
    assert parsed.local_groups() == ["a/m/here"]
    assert parsed.local_tier("a/m/there") is None
    found = parsed.local_tier("a/m/here")
    assert found is not None and found[1].tier == "here" and found[0].max_tokens == 64
    # A local tier writes no "peer" field: a table from before peers reads the same.
    assert (
        '"peer"'
        not in Routes(
            {"a": TeamRoute({"m": ModelRoute(1, (TierRoute("t", "a/m/t", 1),))})}
        ).to_json()
    )


def test_a_tier_that_may_sleep_keeps_its_wake_wait() -> None:
    route = ModelRoute(8, (TierRoute("t", "a/m/t", 1, wake_seconds=300),))
    table = Routes({"a": TeamRoute({"m": route})})
    assert Routes.from_json(table.to_json()).teams["a"].models["m"].tiers[0].wake_seconds == 300


def test_a_failing_tier_is_passed_over_until_every_tier_fails() -> None:
    assert choose_tier(ROUTE, {}, {FIRST.group}) == (SECOND, True)
    # Full as well: the request waits at the first usable tier, still past the failing one.
    assert choose_tier(ROUTE, {SECOND.group: 1}, {FIRST.group}) == (SECOND, True)
    assert choose_tier(ROUTE, {}, {FIRST.group, SECOND.group}) == (FIRST, False)
