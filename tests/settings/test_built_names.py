"""Names built from settings are checked at `validate` against the object they name, at exactly
each limit and one past it (llamafleet.settings.names, llamafleet.settings.rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llamafleet.settings.load import SettingsError, load_stack_file, stack_file
from llamafleet.settings.names import (
    AUTONAME_SUFFIX_LENGTH,
    EKS_CLUSTER_MAX,
    IAM_ROLE_MAX,
    NODE_GROUP_MAX,
)
from llamafleet.settings.placement import placements

Config = dict[str, Any]


def prod() -> Config:
    return yaml.safe_load(stack_file("prod").read_text())["config"]


def load(config: Config, tmp_path: Path, stack: str = "prod") -> None:
    file = tmp_path / f"Pulumi.{stack}.yaml"
    file.write_text(yaml.safe_dump({"config": config}))
    load_stack_file(file)


def one_line(config: Config, tmp_path: Path, stack: str = "prod") -> str:
    with pytest.raises(SettingsError) as caught:
        load(config, tmp_path, stack)
    (line,) = str(caught.value).splitlines()
    return line.split(": llamafleet:", 1)[1]


def rename_model(config: Config, old: str, new: str) -> None:
    models = config["llamafleet:models"]
    models[new] = models.pop(old)
    for tenant in config["llamafleet:tenants"].values():
        tenant["models"] = [new if m == old else m for m in tenant["models"]]


def rename_cluster(config: Config, old: str, new: str) -> None:
    clusters = config["llamafleet:clusters"]
    clusters[new] = clusters.pop(old)


def rename_tier(config: Config, cluster: str, old: str, new: str) -> None:
    tiers = config["llamafleet:clusters"][cluster]["tiers"]
    tiers[new] = tiers.pop(old)
    for model in config["llamafleet:models"].values():
        model["tiers"] = [new if t == old else t for t in model["tiers"]]


def on_prem_store(config: Config) -> None:
    """A store read with a key pair: no fetcher IAM roles to name."""
    config["llamafleet:modelStore"]["endpointUrl"] = "https://s3.dc1.example"
    config["llamafleet:modelStore"]["credentialsSecret"] = "model-store"


def test_a_service_name_must_start_with_a_letter(tmp_path: Path) -> None:
    config = prod()
    rename_model(config, "gemma3-270m", "3-gemma")
    line = one_line(config, tmp_path)
    assert line.startswith("models.3-gemma: Service on tier "), line
    assert "must start with a letter (a DNS label)" in line


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_fetchers_iam_role_name_at_the_limit_and_one_past(
    tmp_path: Path, extra: int, refused: bool
) -> None:
    """`<cluster>-<team>-<model>-<tier>` plus Pulumi's suffix, against IAM's 64 characters."""
    config = prod()
    rename_cluster(config, "prod", "c" * 20)  # long, but the other models' roles still fit
    file = tmp_path / "Pulumi.prod.yaml"
    file.write_text(yaml.safe_dump({"config": config}))
    base = max(
        len(f"{p.cluster_name}-{p.team}-{p.tier_name}-")
        for p in placements(load_stack_file(file))
        if p.model_name == "gemma3-270m"
    )
    model = "g" * (IAM_ROLE_MAX - AUTONAME_SUFFIX_LENGTH - base + extra)
    assert len(model) <= 30  # a valid name on its own
    rename_model(config, "gemma3-270m", model)
    if not refused:
        load(config, tmp_path)
        return
    line = one_line(config, tmp_path)
    assert line.startswith(f"models.{model}: IAM role of team "), line
    assert f"is {IAM_ROLE_MAX + 1} characters; AWS allows {IAM_ROLE_MAX}" in line


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_node_group_name_at_the_limit_and_one_past(
    tmp_path: Path, extra: int, refused: bool
) -> None:
    """`<cluster>-<tier>-nodes` plus Pulumi's suffix, against EKS's 63 characters."""
    config = prod()
    on_prem_store(config)
    cluster = "c" * 30
    tier = "t" * (NODE_GROUP_MAX - AUTONAME_SUFFIX_LENGTH - len(f"{cluster}--nodes") + extra)
    assert len(tier) <= 30
    rename_cluster(config, "prod", cluster)
    rename_tier(config, cluster, "cpu-avx512", tier)
    if not refused:
        load(config, tmp_path)
        return
    line = one_line(config, tmp_path)
    assert line.startswith(f"clusters.{cluster}.tiers.{tier}: "), line
    assert f"EKS node group '{cluster}-{tier}-nodes' plus Pulumi's" in line
    assert f"is {NODE_GROUP_MAX + 1} characters; AWS allows {NODE_GROUP_MAX}" in line


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_the_eks_cluster_name_at_the_limit_and_one_past(
    tmp_path: Path, extra: int, refused: bool
) -> None:
    """`<stack>-<cluster>` against EKS's 100 characters; the stack comes from the file name."""
    config = prod()
    stack = "s" * (EKS_CLUSTER_MAX - len("-prod") + extra)
    if not refused:
        load(config, tmp_path, stack)
        return
    line = one_line(config, tmp_path, stack)
    assert line.startswith("clusters.prod: EKS cluster name"), line
    assert f"is {EKS_CLUSTER_MAX + 1} characters; EKS allows {EKS_CLUSTER_MAX}" in line


@pytest.mark.parametrize(("length", "refused"), [(30, False), (31, True)])
def test_a_team_name_at_the_limit_and_one_past(tmp_path: Path, length: int, refused: bool) -> None:
    config = prod()
    tenants = config["llamafleet:tenants"]
    tenants["t" * length] = tenants.pop("analytics")
    if not refused:
        load(config, tmp_path)
        return
    line = one_line(config, tmp_path)
    assert line.startswith(f"tenants.{'t' * length}: name "), line
    assert "at most 30 characters" in line


def test_an_on_prem_store_needs_no_fetcher_role_so_its_name_is_not_checked(tmp_path: Path) -> None:
    config = prod()
    rename_cluster(config, "prod", "c" * 30)
    rename_model(config, "gemma3-270m", "g" * 30)
    on_prem_store(config)
    load(config, tmp_path)
