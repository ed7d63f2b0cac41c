"""Renames: a model, team or tier that names its former name keeps, through Pulumi aliases,
the resources whose identity does not depend on the name (README: renames)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.program.stack import main as program_main
from llamafleet.settings.load import engine_config, stack_file
from llamafleet.settings.names import former_names


def declare(config: dict[str, Any], tmp_path: Path, stack: str) -> list[Declared]:
    file = tmp_path / f"Pulumi.{stack}.yaml"
    file.write_text(yaml.safe_dump({"config": config}))
    return run_program(program_main, stack, engine_config(file))


def config_of(stack: str) -> dict[str, Any]:
    return yaml.safe_load(stack_file(stack).read_text())["config"]


def test_former_names_are_every_combination_but_the_current_one() -> None:
    assert former_names(("dc1", None), ("search", "web"), ("gemma", None)) == ["dc1-web-gemma"]
    assert former_names(("a", "x"), ("b", "y")) == ["a-y", "x-b", "x-y"]
    assert former_names(("a", "a"), ("b", None)) == []


def test_a_renamed_model_aliases_its_services_old_name(tmp_path: Path) -> None:
    config = config_of("local")
    models = config["llamafleet:models"]
    models["gemma"] = {**models.pop("gemma3-270m"), "formerName": "gemma3-270m"}
    for tenant in config["llamafleet:tenants"].values():
        tenant["models"] = ["gemma" if m == "gemma3-270m" else m for m in tenant["models"]]
    (service,) = [
        d
        for d in declare(config, tmp_path, "local")
        if d.type == "llamafleet:serving:InferenceService"
    ]
    assert service.name == "local-demo-gemma-cpu-small"
    assert service.aliases == ("name=local-demo-gemma3-270m-cpu-small",)


def test_a_renamed_team_aliases_its_tenant_so_its_keys_are_kept(tmp_path: Path) -> None:
    config = config_of("local")
    tenants = config["llamafleet:tenants"]
    tenants["apps"] = {**tenants.pop("demo"), "formerName": "demo"}
    declared = declare(config, tmp_path, "local")
    (tenant,) = [d for d in declared if d.type == "llamafleet:tenancy:Tenant"]
    assert tenant.aliases == ("name=demo",)
    # The keys are named after the tenant: the engine carries the alias over to them.
    keys = [d for d in declared if d.type.endswith("tenancy:ApiKey") and d.parent == tenant.urn]
    assert len(keys) == 4 and all(k.name.startswith("apps-") for k in keys)


@pytest.mark.parametrize("stack", ["prod"])
def test_a_renamed_tier_aliases_its_node_tier(tmp_path: Path, stack: str) -> None:
    config = config_of(stack)
    tiers = config["llamafleet:clusters"]["prod"]["tiers"]
    tiers["cpu-fast"] = {**tiers.pop("cpu-avx512"), "formerName": "cpu-avx512"}
    for model in config["llamafleet:models"].values():
        model["tiers"] = ["cpu-fast" if t == "cpu-avx512" else t for t in model["tiers"]]
    declared = declare(config, tmp_path, stack)
    (node_tier,) = [
        d for d in declared if d.type == "llamafleet:cluster:NodeTier" and d.name == "prod-cpu-fast"
    ]
    assert node_tier.aliases == ("name=prod-cpu-avx512",)
    services = [d for d in declared if d.type == "llamafleet:serving:InferenceService"]
    renamed = [s for s in services if s.name.endswith("-cpu-fast")]
    assert renamed and all(
        s.aliases == (f"name={s.name[: -len('cpu-fast')]}cpu-avx512",) for s in renamed
    )


def test_without_a_former_name_nothing_is_aliased() -> None:
    declared = run_program(program_main, "prod", engine_config(stack_file("prod")))
    llamafleet = [d for d in declared if d.type.startswith("llamafleet:")]
    assert [d.name for d in llamafleet if d.aliases] == []


def test_a_former_name_that_another_model_still_has_is_refused(tmp_path: Path) -> None:
    from llamafleet.settings.load import SettingsError, load_stack_file  # noqa: PLC0415

    config = config_of("prod")
    config["llamafleet:models"]["qwen25-7b"]["formerName"] = "gemma3-270m"
    file = tmp_path / "Pulumi.prod.yaml"
    file.write_text(yaml.safe_dump({"config": config}))
    with pytest.raises(SettingsError) as caught:
        load_stack_file(file)
    (line,) = str(caught.value).splitlines()
    assert "llamafleet:models.qwen25-7b.formerName: 'gemma3-270m' is the name of another" in line


def test_a_renamed_model_keeps_its_fetchers_iam_roles(tmp_path: Path) -> None:
    config = config_of("prod")
    models = config["llamafleet:models"]
    models["gemma"] = {**models.pop("gemma3-270m"), "formerName": "gemma3-270m"}
    for tenant in config["llamafleet:tenants"].values():
        tenant["models"] = ["gemma" if m == "gemma3-270m" else m for m in tenant["models"]]
    declared = declare(config, tmp_path, "prod")
    roles = [
        d
        for d in declared
        if d.type in ("aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        and "-gemma-" in d.name
    ]
    assert roles
    for role in roles:
        assert role.aliases == (f"name={role.name.replace('-gemma-', '-gemma3-270m-')}",)
