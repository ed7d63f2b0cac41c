"""What every component config shares: the pydantic base and the constrained values.

A component's config is a pydantic model whose validators are the component's rules; a stack's
settings compose those models (`infra.schema`), so a rule is written once and `validate` refuses
what the component would. Each constrained type below is the one definition of its rule; plain
`*_problem` functions return the reason (or None) for code that checks without pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

from modelsync.store import bucket_name_problem, prefix_problem


class ComponentConfig(BaseModel):
    """Base of component configs and stack settings: unknown keys are errors, values are frozen,
    keys are camelCase in YAML and Pulumi config (snake_case in Python), strings are stripped."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
    )


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        reason = problem(value)
        if reason is not None:
            raise ValueError(reason)
        return value

    return AfterValidator(check)


# AWS region codes (us-east-1, eu-west-3, us-gov-west-1, ap-southeast-4): lower-case words and a
# number, joined by hyphens (https://docs.aws.amazon.com/general/latest/gr/rande.html).
_REGION_RE: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def region_problem(region: str) -> str | None:
    """Why `region` is not an AWS region code (None if it is), e.g. `EU-West-1`."""
    if not _REGION_RE.match(region):
        return "is not an AWS region code (lower case, like eu-west-1)"
    return None


def endpoint_url_problem(url: str) -> str | None:
    """Why `url` is not an S3 endpoint URL (None if it is): http(s)://HOST[:PORT] with no
    credentials in it (they would land in state and in pod specs; the AWS credential chain or
    `modelStore.credentials` supplies them), no path, query or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be http(s)://HOST[:PORT]"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials: they come from the AWS credential chain"
    if parts.path.strip("/") or parts.query or parts.fragment:
        return "must be http(s)://HOST[:PORT], without a path, query or fragment"
    if port == 0:
        return "port must be 1-65535"
    return None


def endpoint_port(url: str | None) -> int:
    """The TCP port an S3 endpoint URL names, or its scheme's default (443 for https and for
    AWS S3 itself, `url` None; 80 for http)."""
    if url is None:
        return 443
    parts = urlsplit(url)
    return parts.port or (80 if parts.scheme == "http" else 443)


AwsRegion = Annotated[str, _checked(region_problem)]
BucketName = Annotated[str, _checked(bucket_name_problem)]
StorePrefix = Annotated[str, StringConstraints(max_length=512), _checked(prefix_problem)]
EndpointUrl = Annotated[str, StringConstraints(max_length=2048), _checked(endpoint_url_problem)]
# CMake's CUDA_ARCHITECTURES list, e.g. 80;86;90 (compute capabilities without the dot).
CUDA_ARCHITECTURES_PATTERN: Final = r"^\d{2,3}(;\d{2,3})*$"
CudaArchitectures = Annotated[str, StringConstraints(pattern=CUDA_ARCHITECTURES_PATTERN)]
