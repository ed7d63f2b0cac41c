"""LlamaCppImage: builds one image flavour with BuildKit and pushes it to ECR or an on-prem
registry; its output is the reference pinned by digest that InferenceService runs.

pulumi-docker-build (not pulumi-docker's Image): it drives buildx, so it gives registry build
caches (cache-from/cache-to) and multi-platform builds, and it can skip building on preview,
which lets PR previews run where there is no Docker daemon.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
from pydantic import Field, StringConstraints

from llamafleet.components.config import (
    CUDA_ARCHITECTURES_PATTERN,
    ComponentConfig,
    CudaArchitectures,
)

Flavour = Literal["cpu", "cuda", "fetcher", "gateway", "redis"]
# The build cache lives in the image's own repository under this tag prefix; it is the one
# tag allowed to move in an otherwise immutable ECR repository.
CACHE_TAG_PREFIX = "buildcache-"
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# A registry's host[:port] (lower-case host, no scheme, no path), e.g. registry.lab:5000.
REGISTRY_ADDRESS_PATTERN = r"^[a-z0-9.-]+(:\d+)?$"
RepositoryPrefix = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")]
CUDA_ARCHITECTURES = re.compile(CUDA_ARCHITECTURES_PATTERN)


@dataclass(frozen=True)
class FlavourBuild:
    """How one flavour is built; paths are relative to the repository root."""

    # The build context folder.
    context: str
    # The Dockerfile.
    dockerfile: str
    # Files (or folders) whose content decides the image: the tag is derived from them.
    inputs: tuple[str, ...]


FLAVOURS: Mapping[Flavour, FlavourBuild] = {
    "cpu": FlavourBuild(
        "images/llama-cpp",
        "images/llama-cpp/Dockerfile.cpu",
        (
            "images/llama-cpp/Dockerfile.cpu",
            "images/llama-cpp/build.sh",
            "images/llama-cpp/fetch-source.sh",
            "images/llama-cpp/versions",
        ),
    ),
    "cuda": FlavourBuild(
        "images/llama-cpp",
        "images/llama-cpp/Dockerfile.cuda",
        (
            "images/llama-cpp/Dockerfile.cuda",
            "images/llama-cpp/build.sh",
            "images/llama-cpp/fetch-source.sh",
            "images/llama-cpp/versions",
        ),
    ),
    "fetcher": FlavourBuild(
        ".",
        "images/model-fetcher/Dockerfile",
        (
            "images/model-fetcher/Dockerfile",
            "pyproject.toml",
            "requirements.txt",
            "llamafleet/__init__.py",
            "llamafleet/modelsync",
        ),
    ),
    "gateway": FlavourBuild(
        ".",
        "images/gateway/Dockerfile",
        ("images/gateway/Dockerfile", "gateway/requirements.lock", "llamafleet_gateway"),
    ),
    "redis": FlavourBuild("images/redis", "images/redis/Dockerfile", ("images/redis/Dockerfile",)),
}


@dataclass(frozen=True)
class EcrTarget:
    """A private ECR repository this component creates and owns.

    Raises:
        ValueError: `keep_images` or `expire_untagged_days` is below 1.
    """

    # The repository's name, e.g. llamafleet/llama-server.
    repository: str
    # Images kept (ECR lifecycle policy); older ones expire.
    keep_images: int = 50
    # Days after which untagged images (superseded caches, failed pushes) expire.
    expire_untagged_days: int = 7
    # KMS key that encrypts the repository; None: AES256 (ECR's default encryption).
    kms_key_arn: str | None = None

    def __post_init__(self) -> None:
        if self.keep_images < 1 or self.expire_untagged_days < 1:
            raise ValueError("EcrTarget: keep_images and expire_untagged_days must be >= 1")


@dataclass(frozen=True)
class RegistryTarget:
    """An existing registry (on-prem), e.g. address "registry.lab:5000",
    repository "llamafleet/llama-server".

    Raises:
        ValueError: `address` is not a lower-case host[:port], or only one of username and
            password is given.
    """

    # host[:port]
    address: str
    # The repository's path in the registry.
    repository: str
    # Both None: the build is given no credentials for the registry.
    username: str | None = None
    # Passed on as a secret Output.
    password: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(REGISTRY_ADDRESS_PATTERN, self.address):
            raise ValueError(f"RegistryTarget.address is a host[:port], got {self.address!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("RegistryTarget: give both username and password, or neither")


class ImageBuildConfig(ComponentConfig):
    """Where the images a stack builds are pushed, and what the CUDA image covers
    (`llamafleet:images.build` in a stack's settings); one LlamaCppImage per flavour
    (`LlamaCppImageArgs.of`)."""

    registry: Annotated[str, StringConstraints(pattern=f"^ecr$|{REGISTRY_ADDRESS_PATTERN}")] = (
        Field(
            description="ecr (private repositories the stack creates) or an on-prem registry's "
            "host[:port]."
        )
    )
    repository_prefix: RepositoryPrefix = Field(
        default="llamafleet", description="Repositories are <prefix>/<image>."
    )
    cuda_architectures: CudaArchitectures = Field(
        default="75;80;86;89;90",
        description="CUDA compute capabilities the CUDA image covers (CMake's "
        "CUDA_ARCHITECTURES, without the dot).",
    )


@dataclass(frozen=True)
class LlamaCppImageArgs:
    """One image flavour to build and push.

    Raises:
        ValueError: an unknown flavour; a tag that is not a Docker tag, is 'latest' or starts
            with 'buildcache-'; `cuda_architectures` not like '80;90'; no or unknown platforms.
    """

    # cpu or cuda llama-server, or the model fetcher (FLAVOURS).
    flavour: Flavour
    # Where the image is pushed.
    target: EcrTarget | RegistryTarget
    # The repository checkout; FLAVOURS' paths are relative to it.
    repo_root: Path
    # Empty: derived from the build inputs' content, so an unchanged image keeps its tag and a
    # changed one gets a new tag (ECR tags are immutable here).
    tag: str = ""
    # buildx target platforms (docker_build.Platform values).
    platforms: Sequence[str] = ("linux/amd64",)
    # cuda only: the CUDA_ARCHITECTURES build arg, compute capabilities without the dot.
    cuda_architectures: str = "75;80;86;89;90"
    # Off: `pulumi preview` then needs no Docker daemon; `pulumi up` builds and pushes.
    build_on_preview: bool = False
    # Keep the build cache in the repository, tag buildcache-FLAVOUR (BuildKit mode=max).
    registry_cache: bool = True
    # Extra image labels; org.opencontainers.image.version is always the tag.
    labels: Mapping[str, str] = field(default_factory=dict[str, str])

    @classmethod
    def of(
        cls, config: ImageBuildConfig, flavour: Flavour, repository: str, repo_root: Path
    ) -> LlamaCppImageArgs:
        """`flavour` built from `repo_root` and pushed where `config` says, to
        `<repository_prefix>/<repository>` (ECR: a repository the component creates)."""
        path = f"{config.repository_prefix}/{repository}"
        target: EcrTarget | RegistryTarget = (
            EcrTarget(path)
            if config.registry == "ecr"
            else RegistryTarget(address=config.registry, repository=path)
        )
        return cls(
            flavour=flavour,
            target=target,
            repo_root=repo_root,
            cuda_architectures=config.cuda_architectures,
        )

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {self.flavour!r}: one of {sorted(FLAVOURS)}")
        if self.tag and (not TAG.fullmatch(self.tag) or self.tag == "latest"):
            raise ValueError(f"tag {self.tag!r}: a Docker tag other than 'latest'")
        if self.tag.startswith(CACHE_TAG_PREFIX):
            raise ValueError(f"tag {self.tag!r}: the {CACHE_TAG_PREFIX}* tags hold the build cache")
        if not CUDA_ARCHITECTURES.fullmatch(self.cuda_architectures):
            raise ValueError(f"cuda_architectures {self.cuda_architectures!r}: like '80;90'")
        unknown = set(self.platforms) - {p.value for p in docker_build.Platform}
        if not self.platforms or unknown:
            raise ValueError(f"platforms: unknown {sorted(unknown)}")

    @property
    def build(self) -> FlavourBuild:
        """The flavour's context, Dockerfile and tag inputs."""
        return FLAVOURS[self.flavour]

    @property
    def build_args(self) -> dict[str, str]:
        """Docker build args: CUDA_ARCHITECTURES for cuda, none for the other flavours."""
        return {"CUDA_ARCHITECTURES": self.cuda_architectures} if self.flavour == "cuda" else {}


def content_tag(args: LlamaCppImageArgs) -> str:
    """`<flavour>-<12 hex>` over the build inputs, the build args and the platforms."""
    digest = hashlib.sha256()
    for item in args.build.inputs:
        root = args.repo_root / item
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(args.repo_root)).encode() + b"\0")
                digest.update(path.read_bytes())
    digest.update(json.dumps([args.build_args, sorted(args.platforms)]).encode())
    return f"{args.flavour}-{digest.hexdigest()[:12]}"


def lifecycle_policy(target: EcrTarget) -> dict[str, Any]:
    """Untagged layers (superseded caches, failed pushes) expire; the newest images stay."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"expire untagged after {target.expire_untagged_days} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": target.expire_untagged_days,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"keep the newest {target.keep_images} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": target.keep_images,
                },
                "action": {"type": "expire"},
            },
        ]
    }


class LlamaCppImage(pulumi.ComponentResource):
    """Builds `args.flavour` with BuildKit and pushes it as REPOSITORY:TAG.

    `ref` is REPOSITORY@DIGEST, the reference to run; `repository_url` is REPOSITORY. For an
    ECR target, `repository` (scanned on push, tags immutable except buildcache-*) and
    `lifecycle` are the repository and its lifecycle policy; otherwise both are None.
    """

    image: docker_build.Image
    repository: aws.ecr.Repository | None
    lifecycle: aws.ecr.LifecyclePolicy | None
    repository_url: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(
        self, name: str, args: LlamaCppImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:images:LlamaCppImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = self.lifecycle = None
        if isinstance(args.target, EcrTarget):
            self.repository, self.lifecycle, registry = self._ecr(name, args.target, child)
            self.repository_url = self.repository.repository_url
        else:
            registry = self._registry(args.target)
            self.repository_url = pulumi.Output.from_input(
                f"{args.target.address}/{args.target.repository}"
            )
        tag = args.tag or content_tag(args)
        cache = self.repository_url.apply(lambda url: f"{url}:{CACHE_TAG_PREFIX}{args.flavour}")
        self.image = docker_build.Image(
            f"{name}-image",
            push=True,
            tags=[self.repository_url.apply(lambda url: f"{url}:{tag}")],
            context=docker_build.BuildContextArgs(
                location=str(args.repo_root / args.build.context)
            ),
            dockerfile=docker_build.DockerfileArgs(
                location=str(args.repo_root / args.build.dockerfile)
            ),
            build_args=args.build_args,
            platforms=[docker_build.Platform(p) for p in args.platforms],
            labels={"org.opencontainers.image.version": tag, **args.labels},
            build_on_preview=args.build_on_preview,
            registries=[registry] if registry is not None else None,
            cache_from=self._cache_from(cache) if args.registry_cache else None,
            cache_to=self._cache_to(cache) if args.registry_cache else None,
            opts=child,
        )
        self.ref = pulumi.Output.concat(self.repository_url, "@", self.image.digest)
        self.register_outputs({"ref": self.ref, "repository_url": self.repository_url})

    def _ecr(
        self, name: str, target: EcrTarget, child: pulumi.ResourceOptions
    ) -> tuple[aws.ecr.Repository, aws.ecr.LifecyclePolicy, docker_build.RegistryArgs]:
        kms = target.kms_key_arn is not None
        repository = aws.ecr.Repository(
            f"{name}-repo",
            name=target.repository,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION",
            image_tag_mutability_exclusion_filters=[
                aws.ecr.RepositoryImageTagMutabilityExclusionFilterArgs(
                    filter=f"{CACHE_TAG_PREFIX}*", filter_type="WILDCARD"
                )
            ],
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS" if kms else "AES256", kms_key=target.kms_key_arn
                )
            ],
            opts=child,
        )
        lifecycle = aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=json.dumps(lifecycle_policy(target)),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        registry = docker_build.RegistryArgs(
            address=repository.repository_url.apply(lambda url: url.split("/", 1)[0]),
            username=token.user_name,
            password=pulumi.Output.secret(token.password),
        )
        return repository, lifecycle, registry

    @staticmethod
    def _registry(target: RegistryTarget) -> docker_build.RegistryArgs | None:
        if target.username is None or target.password is None:
            return None
        return docker_build.RegistryArgs(
            address=target.address,
            username=target.username,
            password=pulumi.Output.secret(target.password),
        )

    @staticmethod
    def _cache_from(ref: pulumi.Output[str]) -> list[docker_build.CacheFromArgs]:
        return [docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=ref))]

    @staticmethod
    def _cache_to(ref: pulumi.Output[str]) -> list[docker_build.CacheToArgs]:
        # image_manifest + OCI media types: the cache format ECR accepts.
        return [
            docker_build.CacheToArgs(
                registry=docker_build.CacheToRegistryArgs(
                    ref=ref,
                    mode=docker_build.CacheMode.MAX,
                    image_manifest=True,
                    oci_media_types=True,
                )
            )
        ]
