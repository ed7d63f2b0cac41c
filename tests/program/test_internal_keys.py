"""Rotating the key the gateway presents to a team's llama-servers without a refused request:
`internalKeys` names up to two keys; the servers accept each, the gateway presents the newest, and
the pods roll when what they accept changes (the gateway rolls after them: it waits for the
services). The live proof is tests/image/test_rollout.py (key rotation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi_kubernetes as k8s
import pytest
import yaml
from pydantic import ValidationError

from llamafleet.command.mock_run import API_KEY_TYPE, Declared, run_program
from llamafleet.command.render import Rendered, render
from llamafleet.components.gateway import INTERNAL_KEY_MARK
from llamafleet.components.gateway_config import internal_key_env
from llamafleet.components.tenant import Tenant, TenantArgs, TenantConfig, TenantQuota
from llamafleet.settings.load import stack_file

QUOTA = TenantQuota(cpus=1, memory_gib=1, gpus=0, pods=2)


def _plain(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and "value" in value else value


def declare(internal_keys: list[str]) -> list[Declared]:
    def program() -> None:
        config = TenantConfig(quota=QUOTA, api_keys=["2026-11"], internal_keys=internal_keys)
        Tenant("t", TenantArgs("search", "llamafleet-search", config, {"c": k8s.Provider("c")}))

    return run_program(program, "test", {})


def test_the_servers_accept_every_internal_key_and_the_scrapers() -> None:
    declared = declare(["gateway", "2027-01"])
    names = sorted(d.name for d in declared if d.type == API_KEY_TYPE)
    # The first keeps the resource name it had before keys were named: no new key, no roll.
    assert names == ["t-api-key-2026-11", "t-gateway-key", "t-gateway-key-2027-01", "t-metrics-key"]
    (secret,) = [
        d for d in declared if d.inputs.get("metadata", {}).get("name") == "llamafleet-api-keys"
    ]
    key_file = _plain(_plain(secret.inputs["stringData"])["keys"])
    assert key_file == "mock-t-gateway-key\nmock-t-gateway-key-2027-01\nmock-t-metrics-key\n"


def test_internal_keys_are_one_or_two_distinct_names() -> None:
    assert TenantConfig(quota=QUOTA, api_keys=["a"]).internal_keys == ["gateway"]
    with pytest.raises(ValidationError, match="at most 2 items"):
        TenantConfig(quota=QUOTA, api_keys=["a"], internal_keys=["a", "b", "c"])
    with pytest.raises(ValidationError, match="key names must be distinct"):
        TenantConfig(quota=QUOTA, api_keys=["a"], internal_keys=["a", "a"])


def _local_with(tmp_path: Path, internal_keys: list[str] | None) -> Rendered:
    document = yaml.safe_load(stack_file("local").read_text())
    if internal_keys is not None:
        document["config"]["llamafleet:tenants"]["demo"]["internalKeys"] = internal_keys
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text(yaml.safe_dump(document))
    return render(str(path))


def _mark_and_gateway_key(rendered: Rendered) -> tuple[str, str]:
    objects = rendered.kubernetes_objects
    (model,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "llamafleet-demo"
    ]
    mark = model["spec"]["template"]["metadata"]["annotations"][INTERNAL_KEY_MARK]
    env_secrets = [
        d
        for d in rendered.declared
        if d.inputs.get("metadata", {}).get("name") == "llamafleet-gateway-env"
    ]
    (env,) = env_secrets
    data = _plain(env.inputs["stringData"])
    return mark, str(_plain(data[internal_key_env("demo")]))


def test_adding_a_key_rolls_the_pods_and_the_gateway_presents_the_new_one(tmp_path: Path) -> None:
    before_mark, before_key = _mark_and_gateway_key(_local_with(tmp_path, None))
    after_mark, after_key = _mark_and_gateway_key(_local_with(tmp_path, ["gateway", "2027-01"]))
    assert before_key == "mock-demo-gateway-key"
    assert after_key == "mock-demo-gateway-key-2027-01"
    assert after_mark != before_mark
    # Dropping the old name rolls the pods again; the gateway keeps the new key.
    dropped_mark, dropped_key = _mark_and_gateway_key(_local_with(tmp_path, ["2027-01"]))
    assert dropped_key == after_key and dropped_mark not in (before_mark, after_mark)


def test_the_gateway_rolls_after_the_model_pods(tmp_path: Path) -> None:
    rendered = _local_with(tmp_path, ["gateway", "2027-01"])
    (gateway,) = [d for d in rendered.declared if d.type == "llamafleet:serving:Gateway"]
    # Depending on a component is depending on its children: the model Deployments among them.
    deployments = [
        d.urn
        for d in rendered.declared
        if d.type == "kubernetes:apps/v1:Deployment" and "InferenceService" in d.urn
    ]
    assert deployments and set(deployments) <= set(gateway.depends_on)
