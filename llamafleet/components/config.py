"""What every component config shares: the pydantic base and the constrained values.

A component's config is a pydantic model whose validators are the component's rules; a stack's
settings compose those models (`llamafleet.settings.schema`), so a rule is written once and
`validate` refuses what the component would. Each constrained type below is the one definition of
its rule; plain `*_problem` functions return the reason (or None) for code that checks without
pydantic.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Callable
from typing import Annotated, Final
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

from llamafleet.modelsync.store import bucket_name_problem, prefix_problem


class ComponentConfig(BaseModel):
    """Base of component configs and stack settings: unknown keys are errors, values are frozen,
    keys are camelCase in YAML and Pulumi config (snake_case in Python), strings are stripped,
    and floats are finite (no inf or nan)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        str_strip_whitespace=True,
    )


# A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/); each use adds its
# own length limit.
DNS_1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Kubernetes object name that is used alone (a namespace, a MetalLB pool): a DNS-1123 label
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/).
KubernetesName = Annotated[
    str,
    StringConstraints(pattern=DNS_1123_LABEL_PATTERN, min_length=1, max_length=63),
]
# AWS tags: keys 1-128 characters, values up to 256 (AWS tagging limits,
# https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html).
AwsTagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AwsTagValue = Annotated[str, StringConstraints(max_length=256)]
# An IAM role or user ARN (or an STS assumed role), in any partition.
IamArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:\S+$")]
# An ACM certificate ARN, in any partition
# (https://docs.aws.amazon.com/acm/latest/userguide/authen-overview.html).
AcmCertificateArn = Annotated[
    str,
    StringConstraints(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$"),
]
# A DNS name a certificate covers (RFC 1123 host names; a leading `*.` for a wildcard).
DnsName = Annotated[
    str,
    StringConstraints(
        pattern=r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=253,
    ),
]
# An availability zone code, e.g. eu-west-1a.
AvailabilityZone = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")]


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


def _http_url(
    url: str, shape: str, credentials_from: str = ""
) -> tuple[SplitResult | None, str | None]:
    """`url` split, or why it is not http(s)://HOST… (`shape` is named in the reason), with
    credentials in it refused: they would land in state and in pod specs (`credentials_from`
    says where they come from instead)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is part of the check)
    except ValueError as exc:
        return None, f"is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, f"must be {shape}"
    if parts.username is not None or parts.password is not None:
        return None, f"must not carry credentials{credentials_from}"
    return parts, None


def endpoint_url_problem(url: str) -> str | None:
    """Why `url` is not an S3 endpoint URL (None if it is): http(s)://HOST[:PORT] with no
    credentials in it (the AWS credential chain or `modelStore.credentials` supplies them), no
    path, query or fragment."""
    parts, problem = _http_url(
        url, "http(s)://HOST[:PORT]", ": they come from the AWS credential chain"
    )
    if parts is None:
        return problem
    if parts.path.strip("/") or parts.query or parts.fragment:
        return "must be http(s)://HOST[:PORT], without a path, query or fragment"
    if parts.port == 0:
        return "port must be 1-65535"
    return None


def service_url_problem(url: str) -> str | None:
    """Why `url` is not an in-cluster service URL (None if it is): http(s)://HOST[:PORT][/PATH],
    no credentials."""
    return _http_url(url, "http(s)://HOST[:PORT][/PATH]")[1]


def cidr_problem(value: str) -> str | None:
    """Why `value` is not an IPv4 network in CIDR notation with no host bits set (None if it is),
    e.g. 10.40.0.0/16."""
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        return f"is not an IPv4 CIDR block like 10.40.0.0/16: {exc}"
    return None


def address_problem(value: str) -> str | None:
    """Why `value` is not an IPv4 address (None if it is)."""
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return "is not an IPv4 address"
    return None


def address_range_problem(value: str) -> str | None:
    """Why `value` is neither a CIDR block nor a first-last range of IPv4 addresses, first not
    after last (None if it is); MetalLB pool syntax."""
    if "/" in value:
        return cidr_problem(value)
    first, dash, last = value.partition("-")
    if not dash or address_problem(first) or address_problem(last):
        return "is not a CIDR block or a first-last range of IPv4 addresses"
    if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
        return "starts after it ends"
    return None


PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def ca_certificate_problem(value: str) -> str | None:
    """Why `value` is not one or more PEM CA certificates (None if it is), as OpenSSL reads
    them (`ssl.SSLContext.load_verify_locations`); a private key is refused outright."""
    if "PRIVATE KEY" in value:
        return "holds a private key: give the CA's certificate only"
    blocks = len(set(re.findall(rf"{PEM_CERTIFICATE}.*?-----END CERTIFICATE-----", value, re.S)))
    if blocks == 0:
        return f"is not a PEM certificate ({PEM_CERTIFICATE})"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        return f"is not a readable PEM certificate: {exc}"
    if len(context.get_ca_certs()) != blocks:
        return "holds a certificate that is not a CA's (basicConstraints CA:TRUE)"
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
ServiceUrl = Annotated[str, StringConstraints(max_length=2048), _checked(service_url_problem)]
Ipv4Cidr = Annotated[str, _checked(cidr_problem)]
Ipv4Address = Annotated[str, _checked(address_problem)]
AddressRange = Annotated[str, _checked(address_range_problem)]
CaCertificate = Annotated[
    str, StringConstraints(max_length=65536), _checked(ca_certificate_problem)
]
# CMake's CUDA_ARCHITECTURES list, e.g. 80;86;90 (compute capabilities without the dot).
CUDA_ARCHITECTURES_PATTERN: Final = r"^\d{2,3}(;\d{2,3})*$"
CudaArchitectures = Annotated[str, StringConstraints(pattern=CUDA_ARCHITECTURES_PATTERN)]
