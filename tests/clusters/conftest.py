"""Run `llamafleet.program.clusters.provision` for every cluster of a stack under Pulumi's mock
monitor."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pulumi
import yaml

from llamafleet.command.mock_run import Declared, run_program
from llamafleet.program.clusters import ProvisionedCluster, provision
from llamafleet.settings.load import engine_values, pulumi_settings, stack_file

ROOT = Path(__file__).resolve().parents[2]
EKS_STACKS = ("aws-dev", "prod", "hybrid")
ONPREM_STACKS = ("onprem", "hybrid")
MODELS_POLICY = "arn:aws:iam::123456789012:policy/llamafleet-models-read"
Config = dict[str, Any]


def stack_config(stack: str) -> Config:
    document = yaml.safe_load(stack_file(stack).read_text())
    return copy.deepcopy(document["config"])


def declare(config: Config, models_policy: str | None = MODELS_POLICY) -> list[Declared]:
    """What provisioning every cluster of `config` declares (engine-style JSON config)."""

    def program() -> None:
        settings = pulumi_settings()
        for name, cluster in settings.clusters.items():
            provision(name, cluster, settings.model_store, models_policy)

    return run_program(program, "clusters-test", engine(config))


def engine(config: Config) -> dict[str, str]:
    return engine_values(config)


def provisioned(stack: str, cluster: str) -> ProvisionedCluster:
    """What `provision` hands the program for one cluster of a stack."""
    seen: list[ProvisionedCluster] = []

    def program() -> None:
        settings = pulumi_settings()
        seen.append(provision(cluster, settings.clusters[cluster], settings.model_store))

    run_program(program, "clusters-test", engine(stack_config(stack)))
    (result,) = seen
    return result


@functools.cache
def declared_stack(stack: str) -> tuple[Declared, ...]:
    return tuple(declare(stack_config(stack)))


def of_type(declared: tuple[Declared, ...] | list[Declared], kind: str) -> list[Declared]:
    return [d for d in declared if d.type == kind]


def children(declared: tuple[Declared, ...] | list[Declared], parent: Declared) -> list[Declared]:
    return [d for d in declared if d.parent == parent.urn]


def is_secret(value: Any) -> bool:
    return bool(pulumi.runtime.rpc.is_rpc_secret(value))
