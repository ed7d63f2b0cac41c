"""Bad cluster settings: each gets exactly one line naming the file, the key path and the rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llamafleet.settings.load import SettingsError, load_stack_file

from .conftest import Config, stack_config


def _at(config: Config, path: str) -> tuple[Any, str]:
    head, *rest = path.split(".")
    target: Any = config[f"llamafleet:{head}"]
    for part in rest[:-1]:
        target = target[part]
    return target, rest[-1]


def put(path: str, value: Any) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        target, key = _at(config, path)
        target[key] = value

    return mutate


def drop(path: str) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        target, key = _at(config, path)
        del target[key]

    return mutate


PROD = "clusters.prod"
DC1 = "clusters.dc1"
BAD: list[tuple[str, str, Callable[[Config], None], str, str]] = [
    (
        "unknown instance family for a gpu tier",
        "prod",
        put(f"{PROD}.tiers.gpu-l4.instanceTypes", ["x9z.4xlarge"]),
        f"{PROD}.tiers.gpu-l4.instanceTypes[0]",
        "unknown instance family 'x9z' for a gpu tier; known: ['g4dn', 'g5', 'g6'",
    ),
    (
        "min above max",
        "prod",
        put(f"{PROD}.tiers.cpu-avx2.nodes", {"min": 5, "max": 2}),
        f"{PROD}.tiers.cpu-avx2.nodes",
        "min (5) must not exceed max (2)",
    ),
    (
        "isa the instance type cannot have",
        "prod",
        put(f"{PROD}.tiers.cpu-avx2.isa", "avx512"),
        f"{PROD}.tiers.cpu-avx2.isa",
        "avx512, but m6a.8xlarge is avx2 (AMD Milan: no AVX-512)",
    ),
    (
        "gpu family of another gpu",
        "prod",
        put(f"{PROD}.tiers.gpu-l4.instanceTypes", ["g6e.4xlarge"]),
        f"{PROD}.tiers.gpu-l4.instanceTypes[0]",
        "g6e.4xlarge has nvidia-l40s, not gpu.type nvidia-l4",
    ),
    (
        "cpu-only family on a gpu tier",
        "prod",
        put(f"{PROD}.tiers.gpu-l4.instanceTypes", ["m6i.4xlarge"]),
        f"{PROD}.tiers.gpu-l4.instanceTypes[0]",
        "m6i.4xlarge has no GPU, but this is a gpu tier",
    ),
    (
        "more gpu memory than the gpu has",
        "prod",
        put(f"{PROD}.tiers.gpu-l4.gpu.memoryGib", 40),
        f"{PROD}.tiers.gpu-l4.gpu.memoryGib",
        "40 exceeds the 24 GiB of one nvidia-l4 (g6.4xlarge)",
    ),
    (
        "eks tier without instance types",
        "prod",
        drop(f"{PROD}.tiers.cpu-avx2.instanceTypes"),
        f"{PROD}.tiers.cpu-avx2.instanceTypes",
        "an eks tier needs instanceTypes",
    ),
    (
        "desired size outside the range",
        "prod",
        put(f"{PROD}.tiers.cpu-avx2.desiredNodes", 12),
        f"{PROD}.tiers.cpu-avx2.desiredNodes",
        "12 is outside nodes {min: 2, max: 10}",
    ),
    (
        "eks cluster without eks settings",
        "prod",
        drop(f"{PROD}.eks"),
        f"{PROD}.eks",
        "kind: eks needs eks: {availabilityZones: [...]}",
    ),
    (
        "public endpoint open to anyone",
        "prod",
        put(f"{PROD}.eks.publicEndpoint", True),
        f"{PROD}.eks.publicAccessCidrs",
        "publicEndpoint is on: list the CIDRs that may reach it",
    ),
    (
        "on-prem settings on an eks cluster",
        "prod",
        put(f"{PROD}.onprem", {"nodeFeatureDiscovery": True}),
        f"{PROD}.onprem",
        "only kind: existing clusters take onprem settings",
    ),
    (
        "floating chart version",
        "prod",
        put(f"{PROD}.addons.versions", {"keda": "2.x"}),
        f"{PROD}.addons.versions.keda",
        "String should match pattern",
    ),
    (
        "one zone only",
        "prod",
        put(f"{PROD}.eks.availabilityZones", ["eu-west-1a"]),
        f"{PROD}.eks.availabilityZones",
        "at least 2 items",
    ),
    (
        "on-prem tier without node names",
        "onprem",
        drop(f"{DC1}.tiers.xeon-avx2.nodeNames"),
        f"{DC1}.tiers.xeon-avx2.nodeNames",
        "an on-prem tier needs nodeNames: the nodes forming it",
    ),
    (
        "fewer named nodes than the tier has",
        "onprem",
        put(f"{DC1}.tiers.xeon-avx2.nodeNames", ["dc1-r3-n01"]),
        f"{DC1}.tiers.xeon-avx2.nodeNames",
        "1 nodes named, but nodes.max is 4",
    ),
    (
        "a node in two tiers",
        "onprem",
        put(
            f"{DC1}.tiers.xeon-avx2.nodeNames",
            ["dc1-r3-n01", "dc1-r3-n02", "dc1-r3-n03", "dc1-r1-n01"],
        ),
        f"{DC1}.tiers.xeon-avx2.nodeNames[3]",
        "dc1-r1-n01 is already in tier xeon-v2",
    ),
    (
        "eks settings on an existing cluster",
        "onprem",
        put(f"{DC1}.eks", {"availabilityZones": ["eu-west-1a", "eu-west-1b"]}),
        f"{DC1}.eks",
        "only kind: eks clusters take eks settings",
    ),
    (
        "instance types on an existing cluster",
        "onprem",
        put(f"{DC1}.tiers.xeon-v2.instanceTypes", ["m6i.4xlarge"]),
        f"{DC1}.tiers.xeon-v2.instanceTypes",
        "instanceTypes is for eks tiers; this cluster is existing",
    ),
    (
        "fixed address without MetalLB",
        "onprem",
        drop(f"{DC1}.onprem.metallb"),
        f"{DC1}.loadBalancer.address",
        "a fixed address needs onprem.metallb",
    ),
]


@pytest.mark.parametrize(
    ("stack", "mutate", "key", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_cluster_settings_get_one_clear_line(
    tmp_path: Path, stack: str, mutate: Callable[[Config], None], key: str, fragment: str
) -> None:
    config = stack_config(stack)
    mutate(config)
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    with pytest.raises(SettingsError) as caught:
        load_stack_file(bad)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith(f"{bad}: llamafleet:{key}: "), lines[0]
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("stack", ["prod", "onprem"])
def test_the_unchanged_stacks_are_valid(tmp_path: Path, stack: str) -> None:
    """The mutations above are the only thing wrong in each case."""
    good = tmp_path / "Pulumi.good.yaml"
    good.write_text(yaml.safe_dump({"config": stack_config(stack)}))
    load_stack_file(good)
