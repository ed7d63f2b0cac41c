"""Tenant: a team's namespace, its share of the fleet and its API keys.

Keys are named (e.g. `2026-11`), one `ApiKey` resource per name, so adding a name adds one key and
removing a name retires only that key. They are only ever handled as secret Outputs: encrypted in
the state, they end at the gateway, which holds only their hashes. The team's llama-servers
accept two other keys of the team's own (their --api-key-file, a mounted Secret): the gateway's
internal key for the team and the metrics scraper's.
Where pods read the model store with a shared credentials file (on-prem), the Tenant also holds
that file as a Secret in each of its namespaces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, StringConstraints, field_validator

from llamafleet.components.api_keys import ApiKey
from llamafleet.components.config import DNS_1123_LABEL_PATTERN, ComponentConfig
from llamafleet.components.inference_pod import STORE_CREDENTIALS_KEY
from llamafleet.components.labels import GPU_RESOURCE, TEAM_LABEL
from llamafleet.components.manifest import manifest
from llamafleet.components.pod_security import restricted_namespace_labels

# Names of Kubernetes Secrets, not secret values.
API_KEY_SECRET = "llamafleet-api-keys"  # noqa: S105
METRICS_KEY_SECRET = "llamafleet-metrics-key"  # noqa: S105


class TenantQuota(ComponentConfig):
    """A team's ResourceQuota, in each of its namespaces (so per cluster); the stack's
    `llamafleet:tenants.<team>.quota` is this config. Raises pydantic's ValidationError for a
    value out of range."""

    cpus: float = Field(
        gt=0, description="CPUs, as both requests.cpu and limits.cpu, over the team's pods."
    )
    memory_gib: float = Field(
        gt=0,
        description="Memory in GiB, as both requests.memory and limits.memory (whole MiB, "
        "rounded down).",
    )
    gpus: int = Field(default=0, ge=0, description="GPUs, as requests.nvidia.com/gpu.")
    pods: int = Field(ge=1, description="Pods.")


@dataclass(frozen=True)
class StoreCredentials:
    """A Secret named `secret_name` whose key `credentials` is `file` (an AWS shared credentials
    file, a secret Output), in each of the team's namespaces, for the model fetchers."""

    secret_name: str
    file: pulumi.Output[str]


# The internal key every team had before internal keys were named: its resource keeps its name.
FIRST_INTERNAL_KEY = "gateway"
# A key's name: kept in resource names and shown by `llamafleet keys` (e.g. 2026-11).
KeyName = Annotated[
    str,
    StringConstraints(pattern=DNS_1123_LABEL_PATTERN, min_length=1, max_length=20),
]


class TenantConfig(ComponentConfig):
    """A team's share of the fleet and its keys (in a stack's settings, the `quota` and
    `apiKeys` of `llamafleet:tenants.<team>`).

    Raises:
        pydantic.ValidationError: the quota is out of range, or `api_keys` is empty, longer
            than 10, repeats a name, or is a count (the keys before they were named).
    """

    quota: TenantQuota = Field(
        description="The team's share of the fleet: the ResourceQuota of each of its namespaces."
    )
    api_keys: list[KeyName] = Field(
        min_length=1,
        max_length=10,
        description="Names of the team's keys, oldest first, one key each (e.g. [2026-11, "
        "2026-12]): add a name to issue a key, remove one to retire only that key.",
    )

    internal_keys: list[KeyName] = Field(
        default_factory=lambda: [FIRST_INTERNAL_KEY],
        min_length=1,
        max_length=2,
        description="Names of the keys the gateway presents to the team's llama-servers, oldest "
        "first: the servers accept each, the gateway presents the newest. To rotate with no "
        "request refused, add a name (one `up`: the pods roll to accept both, then the gateway "
        "switches), then drop the old one (the pods roll again).",
    )

    @field_validator("api_keys", "internal_keys", mode="before")
    @classmethod
    def _named_keys(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                "keys are named now: give a list of names, oldest first, e.g. [2026-11, 2026-12]"
                " (README: moving from RandomPassword keys)"
            )
        if isinstance(value, list | tuple) and len(set(map(str, value))) != len(value):  # pyright: ignore[reportUnknownArgumentType]
            raise ValueError("key names must be distinct")
        return value


@dataclass(frozen=True)
class TenantArgs:
    """A team in the clusters it has deployments in. The keys are generated once and the same
    Secret lands in each cluster, so a team has one set of keys across a hybrid fleet.

    Attributes:
        team: The team's name, the `llamafleet.io/team` label.
        namespace: The team's namespace, the same in every cluster.
        config: Its quota and key names.
        clusters: Every cluster where the team has deployments: name -> Kubernetes provider.
        store_credentials: On-prem model store credentials for the fetchers; None: no such
            Secret.
    """

    team: str
    namespace: str
    config: TenantConfig
    clusters: Mapping[str, k8s.Provider]
    store_credentials: StoreCredentials | None = None


class Tenant(pulumi.ComponentResource):
    """A team: its namespace in each cluster, quota, defaults, default-deny policy and keys.

    `api_keys` is a secret Output mapping each key name to its key; `internal_key` (secret) is
    the key the gateway presents to the team's llama-servers (the newest internal key);
    `accepted_keys` (secret) is the key file those servers read: every internal key and the
    scraper's."""

    api_keys: pulumi.Output[dict[str, str]]
    internal_key: pulumi.Output[str]
    accepted_keys: pulumi.Output[str]
    namespaces: dict[str, k8s.core.v1.Namespace]
    api_key_secret_name: str = API_KEY_SECRET
    metrics_key_secret_name: str = METRICS_KEY_SECRET

    def __init__(
        self, name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:tenancy:Tenant", name, None, opts)
        self._args = args
        keys = {key: self._key(f"{name}-api-key-{key}", key) for key in args.config.api_keys}
        metrics_key = self._key(f"{name}-metrics-key", "metrics")
        internal = [
            self._key(_internal_key_resource(name, key_name), key_name)
            for key_name in args.config.internal_keys
        ]
        self.internal_key = internal[-1]
        self.api_keys = pulumi.Output.secret(pulumi.Output.all(**keys))
        # The gateway's keys first (during a rotation both, so pods that roll before the gateway
        # switches accept either); the scraper's is accepted too (llama-server has no
        # per-endpoint scopes). Team keys are not here: they end at the gateway.
        key_file = pulumi.Output.secret(
            pulumi.Output.all(*internal, metrics_key).apply(lambda ks: "\n".join(ks) + "\n")
        )
        self.accepted_keys = key_file
        self.namespaces = {
            cluster: self._namespace(f"{name}-{cluster}", provider, key_file, metrics_key)
            for cluster, provider in args.clusters.items()
        }
        self.register_outputs({"apiKeys": self.api_keys})

    def _namespace(
        self,
        prefix: str,
        provider: k8s.Provider,
        key_file: pulumi.Output[str],
        metrics_key: pulumi.Output[str],
    ) -> k8s.core.v1.Namespace:
        """The team's namespace in one cluster, with its quota, defaults, policy and keys."""
        args = self._args
        labels = {"app.kubernetes.io/part-of": "llamafleet", TEAM_LABEL: args.team}
        namespace = k8s.core.v1.Namespace(
            f"{prefix}-namespace",
            metadata=manifest(
                {"name": args.namespace, "labels": {**labels, **restricted_namespace_labels()}}
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        inside = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])

        def meta(object_name: str) -> Any:
            return manifest({"name": object_name, "namespace": args.namespace, "labels": labels})

        k8s.core.v1.ResourceQuota(
            f"{prefix}-quota",
            metadata=meta("llamafleet-quota"),
            spec=manifest(_quota_spec(args.config.quota)),
            opts=inside,
        )
        k8s.core.v1.LimitRange(
            f"{prefix}-limits",
            metadata=meta("llamafleet-limits"),
            spec=manifest(_limit_range_spec()),
            opts=inside,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{prefix}-default-deny",
            metadata=meta("default-deny"),
            spec=manifest({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            opts=inside,
        )
        secrets = {
            "api-keys": (API_KEY_SECRET, "keys", key_file),
            "metrics-key": (METRICS_KEY_SECRET, "key", metrics_key),
        }
        if args.store_credentials is not None:
            store = args.store_credentials
            secrets["store-credentials"] = (store.secret_name, STORE_CREDENTIALS_KEY, store.file)
        for suffix, (secret_name, key, value) in secrets.items():
            k8s.core.v1.Secret(
                f"{prefix}-{suffix}",
                metadata=meta(secret_name),
                type="Opaque",
                string_data={key: value},
                opts=inside,
            )
        return namespace

    def _key(self, resource_name: str, key_name: str) -> pulumi.Output[str]:
        key = ApiKey(resource_name, key_name, opts=pulumi.ResourceOptions(parent=self))
        return pulumi.Output.secret(key.value)


def _internal_key_resource(team_resource: str, key_name: str) -> str:
    """The ApiKey resource of internal key `key_name`: the first one keeps the name it had
    before internal keys were named, so its key (and the pods) stay as they are."""
    if key_name == FIRST_INTERNAL_KEY:
        return f"{team_resource}-gateway-key"
    return f"{team_resource}-gateway-key-{key_name}"


def _quota_spec(quota: TenantQuota) -> dict[str, Any]:
    cpus = f"{quota.cpus:g}"
    memory = f"{math.floor(quota.memory_gib * 1024)}Mi"
    return {
        "hard": {
            "requests.cpu": cpus,
            "limits.cpu": cpus,
            "requests.memory": memory,
            "limits.memory": memory,
            f"requests.{GPU_RESOURCE}": str(quota.gpus),
            "pods": str(quota.pods),
        }
    }


def _limit_range_spec() -> dict[str, Any]:
    """Defaults for the team's other containers, so every pod counts against the quota."""
    return {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "512Mi"},
                "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
            }
        ]
    }
