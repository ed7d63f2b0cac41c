"""LlamaCppImage under Pulumi's mock monitor: what it registers, and the ref it outputs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
from llama_server import REPO
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.rpc import is_rpc_secret
from pydantic import ValidationError

DIGEST = "sha256:" + "ab" * 32
ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


class RecordingMocks(pulumi_mocks.Mocks):
    def __init__(self) -> None:
        self.registered: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "aws:ecr/repository:Repository":
            state |= {"repositoryUrl": f"{ECR_HOST}/{args.inputs['name']}", "registryId": ACCOUNT}
        if args.typ == "docker-build:index:Image":
            state |= {"digest": DIGEST}
        self.registered[args.name] = (args.typ, dict(args.inputs))
        return f"{args.name}-id", state

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "ecr-token", "proxyEndpoint": ECR_HOST}, []
        return {}, []


class ParentRecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.parents: dict[str, str] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.parents[request.name] = request.parent
        return super().RegisterResource(request)


@pytest.fixture(scope="module")
def mocks() -> RecordingMocks:
    return RecordingMocks()


@pytest.fixture(scope="module")
def monitor(mocks: RecordingMocks) -> Iterator[ParentRecordingMonitor]:
    recording = ParentRecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, "llamafleet", "test", preview=False, monitor=recording)
    yield recording


@pytest.fixture(scope="module")
def component(monitor: ParentRecordingMonitor) -> ModuleType:
    """Imported only once the mocks are in place."""
    from llamafleet.components import llama_cpp_image  # noqa: PLC0415

    return llama_cpp_image


def inputs(mocks: RecordingMocks, name: str, typ: str) -> dict[str, Any]:
    registered_typ, registered = mocks.registered[name]
    assert registered_typ == typ
    return registered


@pulumi.runtime.test
def test_ecr_cpu_ref_is_pinned_by_digest(component: ModuleType) -> pulumi.Output[None]:
    args = component.LlamaCppImageArgs(
        flavour="cpu", target=component.EcrTarget("llama-server"), repo_root=REPO
    )
    image = component.LlamaCppImage("cpu-ecr", args)

    def check(ref: str) -> None:
        assert ref == f"{ECR_HOST}/llama-server@{DIGEST}"

    return image.ref.apply(check)


@pulumi.runtime.test
def test_ecr_repository_scans_and_keeps_tags_immutable(
    component: ModuleType, mocks: RecordingMocks
) -> pulumi.Output[None]:
    args = component.LlamaCppImageArgs(
        flavour="cpu", target=component.EcrTarget("llama-ecr"), repo_root=REPO
    )
    image = component.LlamaCppImage("repo-check", args)

    def check(_: str) -> None:
        repo = inputs(mocks, "repo-check-repo", "aws:ecr/repository:Repository")
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
        assert repo["imageTagMutabilityExclusionFilters"] == [
            {"filter": "buildcache-*", "filterType": "WILDCARD"}
        ]
        assert repo["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
        policy = inputs(mocks, "repo-check-lifecycle", "aws:ecr/lifecyclePolicy:LifecyclePolicy")
        assert policy["repository"] == "llama-ecr"
        rules = json.loads(policy["policy"])["rules"]
        assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]

    return image.ref.apply(check)


@pulumi.runtime.test
def test_image_builds_the_flavour_dockerfile_and_pushes_with_ecr_credentials(
    component: ModuleType, mocks: RecordingMocks
) -> pulumi.Output[None]:
    args = component.LlamaCppImageArgs(
        flavour="cpu", target=component.EcrTarget("llama-build"), repo_root=REPO
    )
    image = component.LlamaCppImage("build-check", args)

    def check(_: str) -> None:
        built = inputs(mocks, "build-check-image", "docker-build:index:Image")
        assert built["push"] is True
        assert built["buildOnPreview"] is False
        assert built["context"] == {"location": str(REPO / "images/llama-cpp")}
        assert built["dockerfile"] == {"location": str(REPO / "images/llama-cpp/Dockerfile.cpu")}
        assert built["platforms"] == ["linux/amd64"]
        (tag,) = built["tags"]
        assert re.fullmatch(rf"{ECR_HOST}/llama-build:cpu-[0-9a-f]{{12}}", tag), tag
        # The list carries the ECR token, so the whole input is a secret.
        assert is_rpc_secret(built["registries"])
        (registry,) = built["registries"]["value"]
        assert registry["address"] == ECR_HOST and registry["username"] == "AWS"
        assert built["cacheTo"][0]["registry"]["ref"] == f"{ECR_HOST}/llama-build:buildcache-cpu"

    return image.ref.apply(check)


@pulumi.runtime.test
def test_cuda_passes_its_architectures(
    component: ModuleType, mocks: RecordingMocks
) -> pulumi.Output[None]:
    args = component.LlamaCppImageArgs(
        flavour="cuda",
        target=component.EcrTarget("llama-cuda"),
        repo_root=REPO,
        cuda_architectures="90",
    )
    image = component.LlamaCppImage("cuda-check", args)

    def check(_: str) -> None:
        built = inputs(mocks, "cuda-check-image", "docker-build:index:Image")
        assert built["buildArgs"] == {"CUDA_ARCHITECTURES": "90"}
        assert built["dockerfile"]["location"].endswith("images/llama-cpp/Dockerfile.cuda")

    return image.ref.apply(check)


@pulumi.runtime.test
def test_onprem_registry_creates_no_ecr_and_pins_the_digest(
    component: ModuleType, mocks: RecordingMocks
) -> pulumi.Output[None]:
    target = component.RegistryTarget(
        "registry.lab:5000", "llamafleet/model-fetcher", username="ci", password="pw"
    )
    args = component.LlamaCppImageArgs(
        flavour="fetcher", target=target, repo_root=REPO, tag="fetcher-1"
    )
    image = component.LlamaCppImage("onprem", args)

    def check(ref: str) -> None:
        assert ref == f"registry.lab:5000/llamafleet/model-fetcher@{DIGEST}"
        assert "onprem-repo" not in mocks.registered
        built = inputs(mocks, "onprem-image", "docker-build:index:Image")
        assert built["context"] == {"location": str(REPO)}
        assert built["tags"] == ["registry.lab:5000/llamafleet/model-fetcher:fetcher-1"]
        assert is_rpc_secret(built["registries"])
        assert built["registries"]["value"][0]["address"] == "registry.lab:5000"

    return image.ref.apply(check)


@pulumi.runtime.test
def test_children_are_named_after_and_parented_to_the_component(
    component: ModuleType, monitor: ParentRecordingMonitor
) -> pulumi.Output[None]:
    args = component.LlamaCppImageArgs(
        flavour="cpu", target=component.EcrTarget("llama-parent"), repo_root=REPO
    )
    image = component.LlamaCppImage("family", args)

    def check(urns: list[str]) -> None:
        children = {n: p for n, p in monitor.parents.items() if n.startswith("family-")}
        assert set(children) == {"family-repo", "family-lifecycle", "family-image"}
        assert set(children.values()) == {urns[0]}

    assert image.repository is not None and image.lifecycle is not None
    children = [image.repository.urn, image.lifecycle.urn, image.image.urn]
    return pulumi.Output.all(image.urn, *children).apply(check)


def test_content_tag_changes_with_the_build_inputs(component: ModuleType, tmp_path: Path) -> None:
    for item in component.FLAVOURS["cpu"].inputs:
        (tmp_path / item).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / item).write_text("one")
    (tmp_path / "images/llama-cpp/versions").write_text("LLAMA_CPP_BUILD_NUMBER=1")
    args = component.LlamaCppImageArgs(
        flavour="cpu", target=component.EcrTarget("x"), repo_root=tmp_path
    )
    before = component.content_tag(args)
    assert component.content_tag(args) == before
    (tmp_path / "images/llama-cpp/versions").write_text("LLAMA_CPP_BUILD_NUMBER=2")
    assert component.content_tag(args) != before


def test_every_flavour_points_at_files_that_exist(component: ModuleType) -> None:
    for build in component.FLAVOURS.values():
        assert (REPO / build.dockerfile).is_file()
        assert all((REPO / item).exists() for item in build.inputs)


@pytest.mark.parametrize(
    "bad",
    [
        {"tag": "latest"},
        {"tag": "buildcache-cpu"},
        {"tag": "has space"},
        {"cuda_architectures": "sm_90"},
        {"platforms": ("linux/sparc",)},
        {"flavour": "rocm"},
    ],
)
def test_bad_args_are_refused(component: ModuleType, bad: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "flavour": "cpu",
        "target": component.EcrTarget("x"),
        "repo_root": REPO,
    }
    with pytest.raises(ValueError, match=r"\w"):
        component.LlamaCppImageArgs(**(base | bad))


def test_registry_target_needs_both_credentials(component: ModuleType) -> None:
    with pytest.raises(ValueError, match="both"):
        component.RegistryTarget("registry.lab:5000", "r", username="ci")


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("registry.lab:5000", True),
        ("registry.lab", True),
        ("Registry.lab", False),
        ("registry.lab/llamafleet", False),
        ("https://registry.lab", False),
        ("registry.lab:port", False),
        ("", False),
    ],
)
def test_settings_and_the_registry_target_share_one_address_rule(
    component: ModuleType, address: str, valid: bool
) -> None:
    """`images.build.registry` is refused at validate exactly where RegistryTarget would refuse
    it at `up` (one rule)."""

    def accepted(make: Callable[[], object]) -> bool:
        try:
            make()
        except (ValueError, ValidationError):
            return False
        return True

    assert accepted(lambda: component.ImageBuildConfig(registry=address)) is valid
    assert accepted(lambda: component.RegistryTarget(address, "llamafleet/x")) is valid
