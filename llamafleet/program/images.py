"""Which image each pod runs: references pinned in settings, or what LlamaCppImage pushes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from llamafleet import REPO_ROOT
from llamafleet.components.llama_cpp_image import (
    EcrTarget,
    Flavour,
    LlamaCppImage,
    LlamaCppImageArgs,
    RegistryTarget,
)
from llamafleet.settings.schema import ImageBuild, Settings

REPOSITORIES: dict[Flavour, str] = {
    "cpu": "llama-server",
    "cuda": "llama-server-cuda",
    "fetcher": "model-fetcher",
}


@dataclass(frozen=True)
class ImageRefs:
    """Image references (by digest) pods run: llama-server for CPU tiers, the model fetcher,
    and the CUDA llama-server (None: not set, or not built because no gpu tier needs it)."""

    cpu: pulumi.Input[str]
    fetcher: pulumi.Input[str]
    cuda: pulumi.Input[str] | None


def image_refs(settings: Settings, needs_cuda: bool) -> ImageRefs:
    """Build (images.build) or take (references) the images; validated settings have one."""
    images = settings.images
    if images.build is None:
        assert images.cpu is not None and images.fetcher is not None
        return ImageRefs(cpu=images.cpu, fetcher=images.fetcher, cuda=images.cuda)
    build = images.build
    return ImageRefs(
        cpu=_built("cpu", build),
        fetcher=_built("fetcher", build),
        cuda=_built("cuda", build) if needs_cuda else None,
    )


def _built(flavour: Flavour, build: ImageBuild) -> pulumi.Output[str]:
    repository = f"{build.repository_prefix}/{REPOSITORIES[flavour]}"
    target = (
        EcrTarget(repository)
        if build.registry == "ecr"
        else RegistryTarget(address=build.registry, repository=repository)
    )
    image = LlamaCppImage(
        f"image-{flavour}",
        LlamaCppImageArgs(
            flavour=flavour,
            target=target,
            repo_root=REPO_ROOT,
            cuda_architectures=build.cuda_architectures,
        ),
    )
    return image.ref
