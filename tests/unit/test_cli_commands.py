"""Every command the README shows exists and has help; one dispatch, one error boundary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from llamafleet.command.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHOWN = sorted(set(re.findall(r"llamafleet ((?:models )?[a-z][a-z-]+)", README)))


def test_the_readme_shows_commands() -> None:
    assert {"validate", "render", "up", "destroy", "keys", "models inspect"} <= set(SHOWN)


@pytest.mark.parametrize("command", SHOWN)
def test_every_command_the_readme_shows_has_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamafleet.command.cli", *command.split(), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: llamafleet {command}"), result.stdout[:80]


def test_every_command_has_a_help_line() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]  # pyright: ignore[reportPrivateUsage]
    helps = {choice.dest: choice.help for choice in commands._choices_actions}  # type: ignore[attr-defined]
    assert set(helps) == set(commands.choices)  # type: ignore[arg-type]
    assert all(helps.values()), helps


def test_models_names_itself_in_usage_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "--file", "/nonexistent.gguf"]) == 1
    assert capsys.readouterr().err.startswith("llamafleet models: error: ")


def test_extra_arguments_to_other_commands_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "stacks/Pulumi.local.yaml", "extra"])
    assert exited.value.code == 2


def test_an_output_folder_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "out"
    taken.write_text("a file, not a folder")
    assert main(["render", "local", "--out", str(taken)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("llamafleet render: ") and str(taken) in line
