"""`llamafleet serve`'s gateway: the cluster's gateway Deployment, run natively in front of the
llama-servers `serve` runs, as the API server holds it.

Everything comes from the API server: the Deployment's container (args and environment, its
secrets resolved from their Secrets), the ConfigMap it mounts (LiteLLM's config, the routing
table) and the Secret of team key hashes. Two things are mapped to this machine: each backend's
in-cluster Service URL becomes the loopback port of the native llama-server of that Deployment,
and Redis is left out (one native gateway process has nothing to share limits with). The
gateway runs from its own environment (scripts/gateway-venv: the lock, with hashes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from llamafleet import REPO_ROOT
from llamafleet.command.engine import EngineError, outputs
from llamafleet.command.serve import (
    LOOPBACK,
    Kubectl,
    NativePod,
    ServeError,
    Volume,
    client_exports,
    ensure_free,
    is_running,
    lay_out,
    local_path,
    serve_root,
    spawn,
    start,
    stop,
    stop_all,
    wait_ready,
    write_private,
)
from llamafleet.command.serve_prometheus import (
    Target,
    deployed_rules,
    model_target,
    prometheus_binary,
    start_prometheus,
)
from llamafleet.components.gateway import GATEWAY_APP, gateway_argv
from llamafleet.components.gateway_config import CONFIG_FILE, gateway_command
from llamafleet.components.labels import TEAM_LABEL
from llamafleet.components.server_args import SERVER_PORT
from llamafleet_gateway import environment

GATEWAY_SELECTOR = f"app.kubernetes.io/name={GATEWAY_APP}"
# Native ports, from the gateway's (8080 by default): its metrics on 9080, Prometheus on 9090.
GATEWAY_METRICS_OFFSET = 1000
PROMETHEUS_PORT_OFFSET = 1010
PROMETHEUS_STATE = "prometheus"


@dataclass(frozen=True)
class NativeGateway:
    """The gateway Deployment's pod as a native process needs it: its env (secrets resolved),
    its volumes (mount path -> files) and the config file's mount path."""

    namespace: str
    env: dict[str, str]
    mounts: dict[str, dict[str, bytes]]
    config_file: str


def read_gateway(kubectl: Kubectl) -> NativeGateway:
    """The one gateway Deployment the cluster holds, read as the kubelet would.

    Raises:
        ServeError: not exactly one gateway Deployment, an env reference other than a Secret
            key, or a volume other than a ConfigMap, a Secret or an emptyDir.
    """
    items = kubectl.get("deployments", "-A", "-l", GATEWAY_SELECTOR)["items"]
    if len(items) != 1:
        raise ServeError(
            f"expected one gateway Deployment ({GATEWAY_SELECTOR}), found {len(items)}"
        )
    deployment = items[0]
    namespace = str(deployment["metadata"]["namespace"])
    spec: Mapping[str, Any] = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {str(v["name"]): _env_value(kubectl, namespace, v) for v in container.get("env", [])}
    volumes = {str(v["name"]): _volume_files(kubectl, namespace, v) for v in spec["volumes"]}
    mounts = {
        str(m["mountPath"]): volumes[str(m["name"])] for m in container.get("volumeMounts", [])
    }
    args = [str(a) for a in container.get("args", [])]
    return NativeGateway(namespace, env, mounts, args[args.index("--config") + 1])


def _env_value(kubectl: Kubectl, namespace: str, var: Mapping[str, Any]) -> str:
    if "value" in var:
        return str(var["value"])
    ref = var.get("valueFrom", {}).get("secretKeyRef")
    if ref is None:
        raise ServeError(f"gateway env {var['name']}: only values and Secret keys are supported")
    return kubectl.secret(namespace, str(ref["name"]))[str(ref["key"])].decode()


def _volume_files(kubectl: Kubectl, namespace: str, volume: Mapping[str, Any]) -> dict[str, bytes]:
    if "configMap" in volume:
        data = kubectl.get("configmap", str(volume["configMap"]["name"]), "-n", namespace)
        return {str(k): str(v).encode() for k, v in (data.get("data") or {}).items()}
    if "secret" in volume:
        return dict(kubectl.secret(namespace, str(volume["secret"]["secretName"])))
    if "emptyDir" in volume:
        return {}
    raise ServeError(f"gateway volume {volume['name']}: not supported natively")


def native_config(config: Mapping[str, Any], backends: Mapping[str, str]) -> dict[str, Any]:
    """LiteLLM's config for this machine: each deployment's in-cluster base URL replaced by its
    native server's (`backends`: in-cluster base URL -> loopback base URL), and no Redis.

    Raises:
        ServeError: a deployment whose server does not run here.
    """
    models: list[dict[str, Any]] = []
    for entry in config.get("model_list", []):
        params = dict(entry["litellm_params"])
        url = str(params["api_base"])
        if url not in backends:
            raise ServeError(f"gateway backend {entry['model_name']} ({url}) is not served here")
        models.append({**entry, "litellm_params": {**params, "api_base": backends[url]}})
    general = {
        k: v for k, v in config.get("general_settings", {}).items() if k != "coordination_redis"
    }
    return {**config, "model_list": models, "general_settings": general}


def cluster_url(namespace: str, deployment: str) -> str:
    """The in-cluster base URL the gateway's config names for a model Deployment's Service."""
    return f"http://{deployment}.{namespace}.svc.cluster.local:{SERVER_PORT}/v1"


def gateway_venv() -> Path:
    """scripts/gateway-venv's environment (built on first use: a few minutes).

    Raises:
        ServeError: the script failed (its last stderr line).
    """
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "gateway-venv")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise ServeError(f"scripts/gateway-venv: {reason}")
    return Path(done.stdout.strip().splitlines()[-1])


def start_gateway(
    gateway: NativeGateway, backends: Mapping[str, str], state: Path, port: int
) -> bool:
    """Run the gateway natively on loopback `port`, unless it already runs exactly this;
    True if it (re)started. Its helpers raise ServeError when the port is taken, the gateway's
    environment cannot be built, or it exits or is not ready in time."""
    venv = gateway_venv()
    local = lay_out({path: Volume(files) for path, files in gateway.mounts.items()}, state)
    config_dir = local[str(Path(gateway.config_file).parent)]
    config = yaml.safe_load((config_dir / CONFIG_FILE).read_text())
    native = config_dir / "native-config.yaml"
    native.write_text(yaml.safe_dump(native_config(config, backends), sort_keys=True))
    mounts = {path: str(directory) for path, directory in local.items()}
    env = {**os.environ, **{k: local_path(v, mounts) for k, v in gateway.env.items()}}
    env.pop(environment.REDIS, None)  # no Redis here: one process counts alone
    env["PYTHONPATH"] = str(REPO_ROOT)
    env[environment.METRICS_PORT] = str(port + GATEWAY_METRICS_OFFSET)
    env[environment.METRICS_ADDR] = LOOPBACK
    # A digest: the environment holds the gateway's secrets, which must not land in a file.
    fingerprint = hashlib.sha256(
        f"{sorted(gateway.env.items())} {native.read_text()} {port} {venv}".encode()
    ).hexdigest()
    if is_running(state) and (state / "fingerprint").read_text() == fingerprint:
        return False
    stop(state)
    ensure_free(port)
    argv = gateway_command(str(venv / "bin" / "python"), gateway_argv(str(native), LOOPBACK, port))
    process = spawn(argv, env, state, "gateway.log")
    url = f"http://{LOOPBACK}:{port}/health/liveliness"
    wait_ready(url, process, state / "gateway.log", "the gateway")
    (state / "fingerprint").write_text(fingerprint)
    return True


GATEWAY_STATE = "gateway"


def command(
    stack: str,
    *,
    llama_server: Path | None,
    port: int,
    stop_only: bool,
    kubeconfig: Path | None,
    work_dir: Path | None = None,
) -> int:
    """`llamafleet serve STACK [--stop]`: serve the one llama-server Deployment the cluster
    holds (default: the local control plane) on `port` + 1, the cluster's gateway in front
    of it on `port` and a Prometheus with the stack's alert rules scraping both on `port` +
    1010; print Prometheus' rules page, then (last) the line that points OpenAI clients at the
    gateway with the oldest key of the served team (from the stack's outputs), stopping any
    other `serve` started.

    Raises:
        ServeError: never past this function: each (its own, Kubectl's, start's, the engine's)
            is printed as `serve <stack>: <why>` on stderr and the exit status is 1.
    """
    if stop_only:
        stopped = stop_all()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    if llama_server is None:
        print("serve: --llama-server is required to start", file=sys.stderr)
        return 2
    try:
        kubectl = Kubectl(kubeconfig)
        pods = kubectl.pods()
        if len(pods) != 1:
            raise ServeError(f"serve runs one model Deployment natively; {stack} has {len(pods)}")
        pod = pods[0]
        stop_all(keep={pod.name, GATEWAY_STATE, PROMETHEUS_STATE})
        served = start(pod, llama_server, port + 1)
        state = serve_root() / GATEWAY_STATE
        gateway = read_gateway(kubectl)
        backends = {cluster_url(pod.namespace, pod.deployment): served.base_url}
        restarted = start_gateway(gateway, backends, state, port)
        key_file = _client_key(stack, work_dir, _team(kubectl, pod.namespace), state)
        prometheus_url = _prometheus(kubectl, pod, gateway, port)
    except (ServeError, EngineError) as exc:
        print(f"serve {stack}: {exc}", file=sys.stderr)
        return 1
    what = "is serving" if served.restarted or restarted else "was already serving (unchanged)"
    url = f"http://{LOOPBACK}:{port}/v1"
    print(f"{pod.namespace}/{pod.deployment} {what} at {url} (through the gateway)")
    print(f"Prometheus (the stack's alert rules, scraping both): {prometheus_url}/classic/rules")
    print(client_exports(url, key_file))
    return 0


def _prometheus(kubectl: Kubectl, pod: NativePod, gateway: NativeGateway, port: int) -> str:
    """Start (or keep) the native Prometheus on `port` + PROMETHEUS_PORT_OFFSET with the rules
    the engine deployed, scraping the llama-server on `port` + 1 and the gateway's metrics on
    `port` + GATEWAY_METRICS_OFFSET; its base URL."""
    binary = prometheus_binary()
    targets = [
        model_target(kubectl, pod, port + 1),
        Target(
            "gateway",
            port + GATEWAY_METRICS_OFFSET,
            {
                "namespace": gateway.namespace,
                "service": f"{GATEWAY_APP}-metrics",
                "pod": f"{GATEWAY_APP}-native",
            },
        ),
    ]
    prometheus_port = port + PROMETHEUS_PORT_OFFSET
    state = serve_root() / PROMETHEUS_STATE
    start_prometheus(binary, deployed_rules(kubectl), targets, state, prometheus_port)
    return f"http://{LOOPBACK}:{prometheus_port}"


def _team(kubectl: Kubectl, namespace: str) -> str:
    labels = kubectl.get("namespace", namespace)["metadata"].get("labels") or {}
    team = labels.get(TEAM_LABEL)
    if not team:
        raise ServeError(f"namespace {namespace} has no {TEAM_LABEL} label")
    return str(team)


def _client_key(stack: str, work_dir: Path | None, team: str, state: Path) -> Path:
    """A 0600 file holding the team's oldest key (its first named key), from the stack's
    outputs: keys end at the gateway, so that is the key a client presents.

    Raises:
        ServeError: the outputs hold no keys for `team`.
    """
    keys = outputs(stack, work_dir).get(f"{team}-api-keys")
    if not isinstance(keys, dict) or not keys:
        raise ServeError(f"the stack's outputs hold no {team}-api-keys")
    first = str(next(iter(cast(dict[str, object], keys).values())))
    target = state / "client-key"
    write_private(target, (first + "\n").encode())
    return target
