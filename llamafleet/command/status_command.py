"""`llamafleet status STACK`: where a stack's two sources are, and the command that reads and
shows them (`status` gathers, `status_screen` draws).

- The Kubernetes API server, read with the bootstrap's kubectl (`serve.Kubectl`): `--kubeconfig`;
  else for `local` the local control plane's (never $KUBECONFIG's, as `make up`); else the
  cluster's `kubeconfig.path` with its `context`, as the program reaches it; else $KUBECONFIG
  (its first file); else ~/.kube/config.
- Prometheus' HTTP API: `--prometheus URL`, queried directly; else for `local` the native
  Prometheus `llamafleet serve` runs (http://127.0.0.1:9090); else the cluster's `prometheusUrl`:
  through the API server's service proxy where it names an in-cluster Service
  (`http(s)://<service>.<namespace>.svc[.<domain>][:port][/path]`), since an operator's machine
  seldom reaches the cluster's pods, and directly where it names anything else.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from llamafleet.command.engine import LOCAL_STACK, local_kubeconfig
from llamafleet.command.serve import DEPLOYMENT_SELECTOR, LOOPBACK, Kubectl, ServeError
from llamafleet.command.serve_gateway import PROMETHEUS_PORT_OFFSET
from llamafleet.command.status import (
    SOURCE_API_SERVER,
    PrometheusApi,
    SourceError,
    gather,
    to_json,
)
from llamafleet.command.status_screen import show
from llamafleet.components.server_args import SERVER_PORT
from llamafleet.settings.load import SettingsError, display_path, load_stack_file, stack_file
from llamafleet.settings.rules import Problem
from llamafleet.settings.schema import Cluster, Settings

# The native Prometheus of `llamafleet serve` at its default port (the gateway's + 1010).
LOCAL_PROMETHEUS: Final = f"http://{LOOPBACK}:{SERVER_PORT + PROMETHEUS_PORT_OFFSET}"
HTTP_TIMEOUT_SECONDS: Final = 10
# At most this much of an error body that is not Prometheus' JSON goes into the one line.
ERROR_BODY_CHARS: Final = 200


def decode_answer(body: str | bytes, where: str) -> Any:
    """The `data` of a Prometheus HTTP API answer (`{"status": "success", "data": ...}`).

    Raises:
        SourceError: not JSON, or not a success (with Prometheus' errorType and error).
    """
    try:
        answer = json.loads(body)
    except ValueError:
        raise SourceError(f"{where}: the answer is not Prometheus' JSON") from None
    if not isinstance(answer, dict):
        raise SourceError(f"{where}: the answer is not Prometheus' JSON")
    if answer.get("status") != "success":
        kind, error = answer.get("errorType", "error"), answer.get("error", "no reason given")
        raise SourceError(f"{where}: {kind}: {error}")
    return answer.get("data")


def _error_body(body: bytes) -> str:
    """What an HTTP error's body says: Prometheus' `error`, else its first line, shortened."""
    text = body.decode(errors="replace")
    try:
        said = json.loads(text)
    except ValueError:
        said = None
    if isinstance(said, dict) and "error" in said:
        return str(said["error"])  # pyright: ignore[reportUnknownArgumentType]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:ERROR_BODY_CHARS]


class HttpPrometheus:
    """Prometheus' HTTP API at `base_url` (http or https), asked directly (a PrometheusApi)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        """The `data` of `GET base_url+path?params` (HTTP_TIMEOUT_SECONDS).

        Raises:
            SourceError: not an http(s) URL, no connection, a timeout, an HTTP error status
                (with Prometheus' error where it gave one), or an answer that is not a success.
        """
        if urllib.parse.urlsplit(self.base_url).scheme not in ("http", "https"):
            raise SourceError(f"{self.base_url} is not an http(s) URL")
        url = self.base_url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as answer:  # noqa: S310 (scheme checked)
                body: bytes = answer.read()
        except urllib.error.HTTPError as exc:
            said = _error_body(exc.read()) or str(exc.reason)
            raise SourceError(f"{self.base_url}: HTTP {exc.code}: {said}") from None
        except urllib.error.URLError as exc:
            raise SourceError(f"cannot reach {self.base_url}: {exc.reason}") from None
        except TimeoutError:
            raise SourceError(
                f"no answer from {self.base_url} in {HTTP_TIMEOUT_SECONDS} s"
            ) from None
        except OSError as exc:  # a connection reset midway
            raise SourceError(f"cannot reach {self.base_url}: {exc}") from None
        except http.client.HTTPException as exc:  # not HTTP, or cut short
            name = type(exc).__name__
            raise SourceError(f"{self.base_url}: not a whole HTTP answer ({name})") from None
        return decode_answer(body, self.base_url)


@dataclass(frozen=True)
class ClusterService:
    """An in-cluster Service URL's parts: `scheme://<service>.<namespace>.svc…:<port><path>`."""

    scheme: str
    service: str
    namespace: str
    port: int
    path: str

    @property
    def proxy_path(self) -> str:
        """The API server's proxy path to it:
        `/api/v1/namespaces/<ns>/services/[https:]<service>:<port>/proxy<path>`."""
        prefix = "https:" if self.scheme == "https" else ""
        return (
            f"/api/v1/namespaces/{self.namespace}/services/{prefix}{self.service}:{self.port}"
            f"/proxy{self.path}"
        )


def cluster_service(url: str) -> ClusterService | None:
    """`url`'s Service where it names one in the cluster (`<service>.<namespace>.svc` and
    optionally the cluster domain, e.g. `.cluster.local`); None for any other URL. The port
    defaults to the scheme's."""
    parts = urllib.parse.urlsplit(url)
    labels = (parts.hostname or "").split(".")
    if len(labels) < 3 or labels[2] != "svc" or parts.scheme not in ("http", "https"):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return ClusterService(parts.scheme, labels[0], labels[1], port, parts.path.rstrip("/"))


class ProxiedPrometheus:
    """Prometheus' HTTP API through the API server's service proxy (a PrometheusApi): the
    operator needs `get` on `services/proxy` in Prometheus' namespace, not a route to its pods."""

    def __init__(self, kubectl: Kubectl, service: ClusterService) -> None:
        self.kubectl = kubectl
        self.service = service

    def get(self, path: str, params: Mapping[str, str]) -> Any:
        """The `data` of `path?params` at the Service, read with `kubectl get --raw`.

        Raises:
            SourceError: kubectl failed (no answer, the Service or its endpoints missing, an
                HTTP error), or an answer that is not a success.
        """
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            body = self.kubectl.raw(f"{self.service.proxy_path}{path}{query}")
        except ServeError as exc:
            raise SourceError(str(exc)) from None
        where = f"service {self.service.namespace}/{self.service.service}:{self.service.port}"
        return decode_answer(body, where)


def choose_cluster(settings: Settings, name: str | None, source: str) -> tuple[str, Cluster]:
    """The cluster named `name`, default the stack's first (the one whose gateway is the stack's
    endpoint).

    Raises:
        SettingsError: the stack has no cluster `name` (one line naming those it has).
    """
    if name is None:
        name = next(iter(settings.clusters))
    if name not in settings.clusters:
        known = ", ".join(settings.clusters)
        raise SettingsError(source, [Problem("clusters", f"no cluster {name!r}; it has: {known}")])
    return name, settings.clusters[name]


def kubeconfig_for(
    stack: str, cluster: Cluster, given: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Path, str | None]:
    """The kubeconfig file and context (None: the file's current one) to read `cluster` with:
    `given` as it is; for `local` the local control plane's; else the cluster's
    `kubeconfig.path` with its `context`; else $KUBECONFIG's first file; else ~/.kube/config."""
    env = os.environ if environ is None else environ
    if given is not None:
        return given, None
    if stack == LOCAL_STACK:
        return local_kubeconfig(env), None
    context = cluster.kubeconfig.context
    if cluster.kubeconfig.path:
        return Path(cluster.kubeconfig.path).expanduser(), context
    first = next((p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    if first is not None:
        return Path(first), context
    return Path.home() / ".kube" / "config", context


def prometheus_for(
    stack: str, cluster: Cluster, given: str | None, kubectl: Kubectl
) -> PrometheusApi:
    """Where to ask Prometheus: `given` directly; for `local` LOCAL_PROMETHEUS; else the
    cluster's `prometheusUrl`, through the service proxy where it is an in-cluster Service."""
    if given is not None:
        return HttpPrometheus(given)
    if stack == LOCAL_STACK:
        return HttpPrometheus(LOCAL_PROMETHEUS)
    service = cluster_service(cluster.prometheus_url)
    if service is None:
        return HttpPrometheus(cluster.prometheus_url)
    return ProxiedPrometheus(kubectl, service)


def list_deployments(kubectl: Kubectl) -> Sequence[Mapping[str, Any]]:
    """The llama-server Deployments of llamafleet in every namespace (a DeploymentList's items).

    Raises:
        SourceError: kubectl failed (the API server unreachable, refused, …) or answered
            something that is not a list.
    """
    try:
        items: list[Mapping[str, Any]] = kubectl.get(
            "deployments", "--all-namespaces", "-l", DEPLOYMENT_SELECTOR
        )["items"]
    except ServeError as exc:
        raise SourceError(str(exc)) from None
    except (KeyError, ValueError):
        raise SourceError("kubectl's answer is not a Deployment list") from None
    return items


def command(
    stack: str,
    *,
    as_json: bool,
    kubeconfig: Path | None = None,
    prometheus: str | None = None,
    cluster: str | None = None,
) -> int:
    """`llamafleet status STACK`: print the screen (or, `as_json`, `status.to_json`'s document)
    and one line on stderr per source that did not answer, `status <stack>: <source>: <why>`.
    Exit status 1 when the API server did not answer, else 0 (Prometheus' absence is a warning:
    its columns show `-`). A stack file that does not load raises SettingsError (cli prints
    it, one line per problem, and exits 1), as `choose_cluster` does for an unknown cluster."""
    path = stack_file(stack)
    settings = load_stack_file(path)
    name, chosen = choose_cluster(settings, cluster, display_path(path))
    config, context = kubeconfig_for(stack, chosen, kubeconfig)
    kubectl = Kubectl(config, context)
    status = gather(
        stack,
        name,
        lambda: list_deployments(kubectl),
        prometheus_for(stack, chosen, prometheus, kubectl),
    )
    for problem in status.problems:
        print(problem.line(stack), file=sys.stderr)
    if as_json:
        print(json.dumps(to_json(status), indent=2))
    else:
        show(status)
    return 1 if status.problem(SOURCE_API_SERVER) else 0
