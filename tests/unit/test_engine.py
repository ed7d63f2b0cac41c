"""llamafleet.command.engine without the engine: where a stack runs, its environment, and what an
error or a left-behind lock says."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from llamafleet.command import engine
from llamafleet.settings.load import stack_file


def test_local_runs_from_a_generated_project_that_keeps_the_engines_salt(tmp_path: Path) -> None:
    project = engine.write_local_project(tmp_path / "project", engine.REPO_ROOT)
    config_file = project / "Pulumi.local.yaml"
    tracked = yaml.safe_load(stack_file("local").read_text())
    assert yaml.safe_load(config_file.read_text()) == tracked
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    assert settings["name"] == "llamafleet"  # the same project, so the same state as `pulumi up`
    assert "stackConfigDir" not in settings

    # What stack creation writes into the generated copy survives the next run...
    written = yaml.safe_load(config_file.read_text())
    written["encryptionsalt"] = "v1:salt:known"
    written["config"]["llamafleet:serving"] = {"stale": True}
    config_file.write_text(yaml.safe_dump(written))
    engine.write_local_project(tmp_path / "project", engine.REPO_ROOT)
    again = yaml.safe_load(config_file.read_text())
    assert again["encryptionsalt"] == "v1:salt:known"
    # ...while the settings come from the tracked file again.
    assert again["config"] == tracked["config"]


def test_only_local_gets_a_file_backend_and_passphrase_under_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path / "cache"))
    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)

    local = engine.target("local")
    home = tmp_path / "cache" / "pulumi"
    assert local.project_dir == home / "project"
    assert local.env["PULUMI_BACKEND_URL"] == (home / "state").as_uri()
    passphrase = Path(local.env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert passphrase.stat().st_mode & 0o777 == 0o600
    assert local.env["KUBECONFIG"] == str(tmp_path / "cache" / "local" / "kubeconfig")
    assert local.secrets_provider == "passphrase"

    prod = engine.target("prod")
    assert prod.project_dir == engine.REPO_ROOT
    assert "PULUMI_BACKEND_URL" not in prod.env  # the user's `pulumi login`
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in prod.env
    assert prod.secrets_provider is None  # the stack's own; its file names none
    # Explicitly elsewhere, even `local` is the user's: a test or a copy of the project.
    assert "PULUMI_BACKEND_URL" not in engine.target("local", tmp_path).env


def test_a_new_stack_gets_the_secrets_provider_its_stack_file_names(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: llamafleet\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    kms = "awskms://alias/llamafleet-prod?region=eu-west-1"
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text(
        yaml.safe_dump({"secretsprovider": kms, "encryptedkey": "AQID", "config": {}})
    )
    (tmp_path / "stacks" / "Pulumi.onprem.yaml").write_text("config: {}\n")
    (tmp_path / "stacks" / "Pulumi.broken.yaml").write_text("config: [\n")

    assert engine.target("prod", tmp_path).secrets_provider == kms
    assert engine.target("onprem", tmp_path).secrets_provider is None  # the backend's default
    assert engine.target("absent", tmp_path).secrets_provider is None
    assert engine.target("broken", tmp_path).secrets_provider is None  # settings say why


def test_dynamic_providers_run_with_this_interpreter_and_plugins_come_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMAFLEET_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = engine.target("prod").env
    import sys  # noqa: PLC0415

    assert env["PULUMI_PYTHON_CMD"] == sys.executable
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "bin")


def test_a_lock_left_by_a_dead_process_of_this_machine_is_stale() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    message = (
        "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to "
        "end or delete the lock file with `pulumi cancel`.\n"
        f"  file:///x/.pulumi/locks/p/s/a.json: created by root@{host} (pid {dead.pid}) at T"
    )
    assert engine.stale_lock(message) == dead.pid
    alive = message.replace(f"pid {dead.pid}", f"pid {os.getpid()}")
    assert engine.stale_lock(alive) is None  # still running: not ours to release
    elsewhere = message.replace(f"@{host} ", "@another-host ")
    assert engine.stale_lock(elsewhere) is None  # another machine: cannot tell
    assert engine.stale_lock("some other error") is None


def test_a_killed_holder_not_yet_reaped_counts_as_gone() -> None:
    zombie = subprocess.Popen(["true"])  # exits; nobody waits for it yet
    stat = Path(f"/proc/{zombie.pid}/stat")
    deadline = time.monotonic() + 10
    while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    host = socket.gethostname()
    message = f"locked\n  f.json: created by root@{host} (pid {zombie.pid}) at T"
    try:
        assert engine.stale_lock(message) == zombie.pid
    finally:
        zombie.wait()


def test_a_live_lock_is_one_line_naming_its_holder() -> None:
    line = engine._locked_line(  # pyright: ignore[reportPrivateUsage]
        "prod", "locked\n  f.json: created by ci@runner-7 (pid 42) at T"
    )
    assert (
        line
        == "prod is being updated by ci@runner-7 (pid 42); wait for that run to end, then run again"
    )


def test_a_cli_failure_is_its_own_error_line_with_what_to_do() -> None:
    # str(CommandError): "\n code: N\n stdout: …\n stderr: …\n" (pulumi/automation/errors.py)
    login = (
        "\n code: 3\n stdout: \n stderr: error: PULUMI_ACCESS_TOKEN must be set for login "
        "during non-interactive CLI sessions\n"
    )
    assert engine.command_error_line(login) == (
        "PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions (log in "
        "to your backend: `pulumi login <url>`, or set PULUMI_BACKEND_URL)"
    )
    several = "\n code: 255\n stdout: Updating\nerror: first\n stderr: error: update failed\n"
    assert engine.command_error_line(several) == "update failed"
    assert engine.command_error_line("\n code: 1\n stdout: \n stderr: \n") == "code: 1"


@pytest.mark.parametrize("text", [None, "name: [unclosed", "runtime: python\n"])
def test_a_project_file_without_a_name_is_one_engine_error(
    tmp_path: Path, text: str | None
) -> None:
    if text is not None:
        (tmp_path / "Pulumi.yaml").write_text(text)
    with pytest.raises(engine.EngineError, match=r"Pulumi\.yaml"):
        engine.project_name(tmp_path)


def test_an_empty_attrs_file_a_killed_run_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    from llamafleet.command.engine import repair_interrupted_checkpoint  # noqa: PLC0415

    stacks = tmp_path / ".pulumi" / "stacks" / "llamafleet"
    stacks.mkdir(parents=True)
    (stacks / "s.json").write_text("{}")
    (stacks / "s.json.attrs").write_bytes(b"")  # killed between truncate and write
    (stacks / "s.json.bak.attrs").write_bytes(b"\x01gob")
    (stacks / "other.json.attrs").write_bytes(b"")
    env = {"PULUMI_BACKEND_URL": tmp_path.as_uri()}
    assert repair_interrupted_checkpoint("s", env) == [stacks / "s.json.attrs"]
    assert sorted(p.name for p in stacks.iterdir()) == [
        "other.json.attrs",
        "s.json",
        "s.json.bak.attrs",
    ]
    assert repair_interrupted_checkpoint("s", env) == []
    assert repair_interrupted_checkpoint("other", {"PULUMI_BACKEND_URL": "s3://bucket"}) == []
