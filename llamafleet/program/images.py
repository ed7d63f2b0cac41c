"""Which image each pod runs: references pinned in settings, or what LlamaCppImage pushes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from llamafleet import REPO_ROOT
from llamafleet.components.llama_cpp_image import (
    Flavour,
    ImageBuildConfig,
    LlamaCppImage,
    LlamaCppImageArgs,
)
from llamafleet.settings.schema import Images

REPOSITORIES: dict[Flavour, str] = {
    "cpu": "llama-server",
    "cuda": "llama-server-cuda",
    "fetcher": "model-fetcher",
    "gateway": "gateway",
    "redis": "gateway-redis",
}


@dataclass(frozen=True)
class ImageRefs:
    """Image references (by digest) pods run: llama-server for CPU tiers, the model fetcher,
    the gateway and its Redis, and the CUDA llama-server (None: not set, or not built because
    no gpu tier needs it)."""

    cpu: pulumi.Input[str]
    fetcher: pulumi.Input[str]
    gateway: pulumi.Input[str]
    redis: pulumi.Input[str]
    cuda: pulumi.Input[str] | None


def image_refs(images: Images, needs_cuda: bool) -> ImageRefs:
    """Build (images.build) or take (references) the images; validated settings have one."""
    if images.build is None:
        assert images.cpu is not None and images.fetcher is not None
        assert images.gateway is not None and images.redis is not None
        return ImageRefs(
            cpu=images.cpu,
            fetcher=images.fetcher,
            gateway=images.gateway,
            redis=images.redis,
            cuda=images.cuda,
        )
    build = images.build
    return ImageRefs(
        cpu=_built("cpu", build),
        fetcher=_built("fetcher", build),
        gateway=_built("gateway", build),
        redis=_built("redis", build),
        cuda=_built("cuda", build) if needs_cuda else None,
    )


def _built(flavour: Flavour, build: ImageBuildConfig) -> pulumi.Output[str]:
    # The settings section is the component's config; the flavour picks the repository.
    args = LlamaCppImageArgs.of(build, flavour, REPOSITORIES[flavour], REPO_ROOT)
    return LlamaCppImage(f"image-{flavour}", args).ref
