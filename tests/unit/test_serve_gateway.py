"""`serve`'s gateway: read from what the API server holds, mapped to this machine."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from support.stack_renders import gateway_objects, rendered_stack

from llamafleet.command.serve import ServeError
from llamafleet.command.serve_gateway import cluster_url, native_config, read_gateway
from llamafleet.components.gateway_config import CONFIG_DIR, KEYS_DIR

LOCAL_URL = cluster_url("llamafleet-demo", "gemma3-270m-cpu-small")


class FakeKubectl:
    """The local stack's gateway objects as an API server returns them (Secrets filled in)."""

    def __init__(self, edit: Any = None) -> None:
        self.objects = copy.deepcopy(gateway_objects(rendered_stack("local").kubernetes_objects))
        if edit is not None:
            edit(self.objects)

    def get(self, *args: str) -> dict[str, Any]:
        if args[0] == "deployments":
            return {
                "items": [
                    o
                    for o in self.objects
                    if o["kind"] == "Deployment" and o["metadata"]["name"] == "llamafleet-gateway"
                ]
            }
        (config,) = [
            o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == args[1]
        ]
        return config

    def secret(self, namespace: str, name: str) -> dict[str, bytes]:
        assert namespace == "llamafleet-gateway"
        if name == "llamafleet-gateway-keys":
            return {"keys.json": b"{}"}
        return {
            "LLAMAFLEET_KEY_DEMO": b"internal",
            "LITELLM_MASTER_KEY": b"sk-m",
            "REDIS_PASSWORD": b"r",
        }


def test_the_deployed_gateway_is_read_with_its_secrets_resolved() -> None:
    gateway = read_gateway(FakeKubectl())  # type: ignore[arg-type]
    assert gateway.namespace == "llamafleet-gateway"
    assert gateway.env["LLAMAFLEET_KEY_DEMO"] == "internal"
    assert gateway.env["LLAMAFLEET_GATEWAY_KEYS"].startswith(KEYS_DIR)
    assert set(gateway.mounts) >= {CONFIG_DIR, KEYS_DIR}
    assert gateway.config_file.startswith(CONFIG_DIR)


def test_backends_map_to_the_native_servers_and_redis_is_left_out() -> None:
    gateway = read_gateway(FakeKubectl())  # type: ignore[arg-type]
    config = yaml.safe_load(gateway.mounts[CONFIG_DIR]["config.yaml"])
    assert "coordination_redis" in config["general_settings"]
    native = native_config(config, {LOCAL_URL: "http://127.0.0.1:8081/v1"})
    assert [m["litellm_params"]["api_base"] for m in native["model_list"]] == [
        "http://127.0.0.1:8081/v1"
    ]
    assert "coordination_redis" not in native["general_settings"]
    assert native["general_settings"]["custom_auth"] == config["general_settings"]["custom_auth"]


def test_a_backend_not_served_here_is_one_clear_error() -> None:
    config = yaml.safe_load(
        read_gateway(FakeKubectl()).mounts[CONFIG_DIR]["config.yaml"]  # type: ignore[arg-type]
    )
    with pytest.raises(ServeError, match="is not served here"):
        native_config(config, {})


def test_an_env_reference_other_than_a_secret_key_is_refused() -> None:
    def edit(objects: list[dict[str, Any]]) -> None:
        deployment = next(
            o
            for o in objects
            if o["metadata"]["name"] == "llamafleet-gateway" and o["kind"] == "Deployment"
        )
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["env"].append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "x"}}})

    with pytest.raises(ServeError, match="only values and Secret keys"):
        read_gateway(FakeKubectl(edit))  # type: ignore[arg-type]
