"""Team keys at the gateway: hashes only, a changed file read live, closed when unreadable."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llamafleet_gateway.keys import KeyTable, key_hash


def write_keys(path: Path, keys: dict[str, str]) -> None:
    """As the kubelet updates a Secret volume: a new file swapped in (a new inode)."""
    staged = path.with_suffix(".new")
    staged.write_text(json.dumps({key_hash(key): team for key, team in keys.items()}))
    os.replace(staged, path)


def test_a_key_names_its_team_and_an_unknown_key_none(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, {"key-a": "a", "key-b": "b"})
    table = KeyTable(path)
    assert (table.team_of("key-a"), table.team_of("key-b")) == ("a", "b")
    assert table.team_of("key-c") is None
    assert table.team_of("") is None


def test_the_file_holds_hashes_not_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, {"key-a": "a"})
    assert "key-a" not in path.read_text()


def test_a_changed_key_set_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys(path, {"old": "a"})
    table = KeyTable(path)
    assert table.team_of("old") == "a"
    write_keys(path, {"new": "a"})
    assert table.team_of("new") == "a"
    assert table.team_of("old") is None


def test_an_absent_or_broken_file_lets_nobody_in(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    table = KeyTable(path)
    assert table.team_of("key-a") is None
    path.write_text("{not json")
    assert table.team_of("key-a") is None
    write_keys(path, {"key-a": "a"})
    assert table.team_of("key-a") == "a"


def test_the_routing_table_is_read_live_and_a_bad_write_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    from llamafleet_gateway.routes import Routes, TeamRoute  # noqa: PLC0415
    from llamafleet_gateway.watched import Watched  # noqa: PLC0415

    path = tmp_path / "routes.json"
    first = Routes({"a": TeamRoute({})})
    path.write_text(first.to_json())
    table = Watched(path, Routes.from_json)
    assert table.current() == first
    second = Routes({"a": TeamRoute({}, requests_per_minute=5)})
    staged = tmp_path / "new"
    staged.write_text(second.to_json())
    os.replace(staged, path)
    assert table.current() == second
    staged.write_text("{broken")
    os.replace(staged, path)
    assert table.current() == second
