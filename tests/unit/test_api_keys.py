"""ApiKey's dynamic provider: one key per create, from the CSPRNG, kept until its name changes."""

from __future__ import annotations

import string

import pytest

from llamafleet.components.api_keys import KEY_LENGTH, ApiKeyProvider, generate_key


def test_create_makes_a_fresh_key_of_letters_and_digits() -> None:
    provider = ApiKeyProvider()
    made = [provider.create({"keyName": "2026-11", "length": KEY_LENGTH}) for _ in range(20)]
    values = [str((m.outs or {})["value"]) for m in made]
    assert len(set(values)) == 20
    assert len({m.id for m in made}) == 20
    for value in values:
        assert len(value) == KEY_LENGTH
        assert set(value) <= set(string.ascii_letters + string.digits)
    assert (made[0].outs or {})["keyName"] == "2026-11"


def test_the_same_name_keeps_its_key_and_a_new_name_replaces_it() -> None:
    provider = ApiKeyProvider()
    olds = {"keyName": "a", "length": 48, "value": "k"}
    same = provider.diff("id", olds, {"keyName": "a", "length": 48, "value": None})
    assert not same.changes
    renamed = provider.diff("id", olds, {"keyName": "b", "length": 48, "value": None})
    assert renamed.changes and renamed.replaces == ["keyName"]
    assert renamed.delete_before_replace is False  # the new key exists before the old goes
    longer = provider.diff("id", olds, {"keyName": "a", "length": 64, "value": None})
    assert longer.replaces == ["length"]


def test_refresh_keeps_the_key_it_cannot_compare() -> None:
    props = {"keyName": "a", "length": 48, "value": "k"}
    read = ApiKeyProvider().read("id", props)
    assert read.id == "id" and read.outs == props


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        generate_key(16)
    assert len(generate_key(32)) == 32
