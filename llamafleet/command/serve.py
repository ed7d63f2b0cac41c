"""`llamafleet serve`: run what the engine deployed for a stack, natively, on this machine.

The embedded local control plane runs no containers (kwok only marks pods Running), so `make up`
serves the `local` stack's model this way. Everything comes from the API server, as the kubelet
would read it: each llama-server Deployment's init container (command and env), its server
container (command and args), and the Secrets its volumes mount (model-store credentials, the
team's keys). Volumes become directories under the cache, Secrets files in them (mode 0600), and
only the mounted paths and, if asked, the port are mapped to local ones. The fetch runs first
(download by digest, verified; once, without the pod's retries and metrics port), then
llama-server, in the background.

A second `serve` of an unchanged deployment keeps the running server (no restart, no gap).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamafleet.command.engine import cache_dir, engine_bin_dir, local_kubeconfig
from llamafleet.components.server_args import SERVER_PORT

READY_TIMEOUT_SECONDS = 300
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 30
# What `serve` runs: llama-server Deployments of llamafleet (llamafleet.components.inference_pod
# labels).
DEPLOYMENT_SELECTOR = "app.kubernetes.io/name=llama-server,app.kubernetes.io/part-of=llamafleet"
# Secret data by (namespace, name).
SecretReader = Callable[[str, str], Mapping[str, bytes]]


class ServeError(Exception):
    """Why a deployment cannot be served natively, in one line."""


@dataclass(frozen=True)
class Container:
    """One container as a native process runs it: argv (command, then args), its literal env,
    and where each volume is mounted."""

    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, str]  # mount path -> volume name


@dataclass(frozen=True)
class Volume:
    """An emptyDir (`files` None) or a Secret's files (relative path -> bytes)."""

    files: dict[str, bytes] | None = None


@dataclass(frozen=True)
class NativePod:
    """One Deployment's pod, as a native process needs it."""

    namespace: str
    deployment: str
    fetch: Container
    server: Container
    volumes: dict[str, Volume] = field(default_factory=dict[str, Volume])

    @property
    def name(self) -> str:
        """`<namespace>-<deployment>`: its directory under serve_root, as `stop_all` names it."""
        return f"{self.namespace}-{self.deployment}"

    def fingerprint(self) -> str:
        """Changes whenever what would run changes (argv, env, mounted files)."""
        digest = hashlib.sha256()
        for container in (self.fetch, self.server):
            digest.update(json.dumps([container.argv, container.env, container.mounts]).encode())
        for name in sorted(self.volumes):
            files = self.volumes[name].files or {}
            for path in sorted(files):
                digest.update(f"{name}/{path}".encode() + b"\0" + files[path])
        return digest.hexdigest()


def pod_from_deployment(deployment: Mapping[str, Any], read_secret: SecretReader) -> NativePod:
    """The native form of a Deployment (as the API server returns it). Raises ServeError for
    what a native run cannot honour (several containers, env from references, other volumes).

    Raises:
        ServeError: not exactly one init container and one container (and, from the helpers, an
            env var from a reference or a volume neither emptyDir nor Secret).
    """
    meta = deployment["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    spec: Mapping[str, Any] = deployment["spec"]["template"]["spec"]
    inits, servers = spec.get("initContainers") or [], spec.get("containers") or []
    if len(inits) != 1 or len(servers) != 1:
        raise ServeError(f"{namespace}/{name}: expected one init container and one container")
    volumes = {
        str(v["name"]): _volume(namespace, name, v, read_secret) for v in spec.get("volumes") or []
    }
    return NativePod(namespace, name, _container(inits[0]), _container(servers[0]), volumes)


def _container(container: Mapping[str, Any]) -> Container:
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" not in var:
            raise ServeError(f"container {container['name']}: env {var['name']} is a reference")
        env[str(var["name"])] = str(var["value"])
    argv = [*container.get("command", []), *container.get("args", [])]
    mounts = {str(m["mountPath"]): str(m["name"]) for m in container.get("volumeMounts") or []}
    return Container([str(a) for a in argv], env, mounts)


def _volume(
    namespace: str, deployment: str, volume: Mapping[str, Any], read_secret: SecretReader
) -> Volume:
    if "emptyDir" in volume:
        return Volume()
    if "secret" not in volume:
        raise ServeError(f"{namespace}/{deployment}: volume {volume['name']} is not supported")
    source: Mapping[str, Any] = volume["secret"]
    data = read_secret(namespace, str(source["secretName"]))
    items = source.get("items")
    if items is None:
        return Volume(dict(data))
    return Volume({str(item["path"]): data[str(item["key"])] for item in items})


# Options of the pod's fetch that a native run leaves out: it fetches once and fails with the
# fetcher's own status (`modelsync fetch` names the reason), rather than retrying for ever, and
# serves no metrics (nothing scrapes them here, and a fixed port may be taken).
POD_ONLY_FETCH_OPTIONS = ("--metrics-port", "--retry-seconds")


def native_fetch_args(args: list[str]) -> list[str]:
    """`args` (the fetch command's, after `modelsync`) without POD_ONLY_FETCH_OPTIONS and
    their values."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in POD_ONLY_FETCH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in POD_ONLY_FETCH_OPTIONS)):
            kept.append(arg)
    return kept


def localise(argv: list[str], mounts: dict[str, str], port: int | None = None) -> list[str]:
    """Map container paths to local ones (longest prefix first) and optionally the port."""
    local = [local_path(arg, mounts) for arg in argv]
    if port is not None and "--port" in local:
        local[local.index("--port") + 1] = str(port)
    return local


def local_path(arg: str, mounts: Mapping[str, str]) -> str:
    """`arg` with the longest container path of `mounts` that prefixes it mapped to its local
    directory (mount path -> local path); unchanged when none does."""
    for container_path in sorted(mounts, key=len, reverse=True):
        if arg == container_path or arg.startswith(f"{container_path}/"):
            return mounts[container_path] + arg[len(container_path) :]
    return arg


def serve_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where native pods keep their volumes, logs and pid files."""
    return cache_dir(environ) / "serve"


class Kubectl:
    """Reads from the API server with the bootstrap's kubectl (or one on PATH) and `kubeconfig`
    (default: the local control plane's, never $KUBECONFIG's: `make up` must not read Secrets
    from whichever cluster a developer's shell points at), in its `context` (default: the
    file's current context)."""

    def __init__(self, kubeconfig: Path | None = None, context: str | None = None) -> None:
        self.kubeconfig = kubeconfig or local_kubeconfig()
        self.context = context
        built = engine_bin_dir() / "kubectl"
        self.binary = str(built) if built.is_file() else shutil.which("kubectl")

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get -o json ARGS`, parsed (60 s timeout); ServeError (from `_get`) where
        there is no kubectl, no answer in 60 s, or kubectl failed (its error line)."""
        result: dict[str, Any] = json.loads(
            self._get(f"kubectl get {' '.join(args)}", "-o", "json", *args)
        )
        return result

    def raw(self, path: str) -> str:
        """`kubectl get --raw PATH`: the body the API server answers at `path` (through a
        service proxy path, `/api/v1/namespaces/NS/services/SVC:PORT/proxy/...`, the
        Service's answer), as text; ServeError as `get`, named by the path without its query."""
        return self._get(f"kubectl get --raw {path.partition('?')[0]}", "--raw", path)

    def _get(self, what: str, *args: str) -> str:
        """`kubectl get ARGS`' stdout; `what` names the call in errors.

        Raises:
            ServeError: no kubectl, no answer in 60 s, or kubectl failed (its error line).
        """
        if self.binary is None:
            raise ServeError("no kubectl: run scripts/bootstrap-engine")
        context = ["--context", self.context] if self.context else []
        argv = [self.binary, "--kubeconfig", str(self.kubeconfig), *context, "get", *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            raise ServeError(f"{what}: no answer from the API server in 60 s") from None
        if done.returncode != 0:
            raise ServeError(f"{what}: {kubectl_error(done.stderr)}")
        return done.stdout

    def secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's data, decoded: key -> bytes (a SecretReader); ServeError as `get`."""
        data: dict[str, str] = self.get("secret", name, "-n", namespace).get("data") or {}
        return {key: base64.b64decode(value) for key, value in data.items()}

    def pods(self) -> list[NativePod]:
        """Every Deployment DEPLOYMENT_SELECTOR matches, in all namespaces, as a NativePod with
        its Secrets read; ServeError as `get` and pod_from_deployment."""
        items = self.get("deployments", "-A", "-l", DEPLOYMENT_SELECTOR)["items"]
        return [pod_from_deployment(item, self.secret) for item in items]


# klog's line header (severity, date, time): kubectl's log lines, not its error.
_KLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


def kubectl_error(stderr: str) -> str:
    """The line that says why kubectl failed: its first that is not a log line (an unreachable
    server is logged once per discovery attempt before kubectl says "The connection to the
    server ... was refused"); its last line where all are, "failed" where there is none."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if not _KLOG_LINE.match(line)]
    if said:
        return said[0]
    return lines[-1] if lines else "failed"


def lay_out(volumes: Mapping[str, Volume], root: Path) -> dict[str, Path]:
    """Each volume (name -> Volume, e.g. a NativePod's) as a directory under `root`, Secrets
    as 0600 files; name -> its directory. A name may hold '/' (a mount path)."""
    paths: dict[str, Path] = {}
    for name, volume in volumes.items():
        where = root / "volumes" / name.strip("/")
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        for relative, content in (volume.files or {}).items():
            write_private(where / relative, content)
        paths[name] = where
    return paths


def write_private(path: Path, content: bytes) -> None:
    """Write `content` to `path`, which a new file gets mode 0600 from its creation on (a
    Secret's file, a key): never readable by others, not even between create and chmod."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)


def local_mounts(container: Container, volumes: Mapping[str, Path]) -> dict[str, str]:
    """The container's mounts on this machine: mount path -> its volume's directory (lay_out's)."""
    return {path: str(volumes[name]) for path, name in container.mounts.items()}


def native_argv(argv: list[str], mounts: dict[str, str], port: int) -> list[str]:
    """The server argv for this machine: mounts and port mapped, and loopback only, whatever
    the pod binds (the pod's address is policed by a NetworkPolicy; this machine's is not)."""
    local = localise(argv, mounts, port)
    if "--host" in local:
        local[local.index("--host") + 1] = LOOPBACK
    return local


@dataclass(frozen=True)
class Served:
    """A pod served natively: its OpenAI-style base URL (`…/v1`, loopback) and `restarted`
    (False: the same pod was already running and was kept)."""

    pod: NativePod
    base_url: str
    restarted: bool


def start(pod: NativePod, llama_server: Path, port: int = SERVER_PORT) -> Served:
    """Fetch (verified) and start one pod's server in the background, unless it already runs
    exactly this pod; returns where it serves. Raises ServeError (one line) before stopping
    anything when the binaries are missing.

    Raises:
        ServeError: `llama_server` is not executable, no fetcher is next to this interpreter,
            or the fetch failed (and, from the helpers, the port is taken, or llama-server
            exited or was not ready in time).
    """
    state = serve_root() / pod.name
    base = f"http://{LOOPBACK}:{port}"
    fingerprint = f"{pod.fingerprint()} {llama_server.resolve()} {port}"
    if is_running(state) and (state / "fingerprint").read_text() == fingerprint:
        return Served(pod, f"{base}/v1", restarted=False)
    if not os.access(llama_server, os.X_OK):
        raise ServeError(f"{llama_server} is not an executable llama-server")
    # The fetcher image's command is a console script of this package: use this environment's.
    fetcher = shutil.which(pod.fetch.argv[0], path=str(Path(sys.executable).parent))
    if fetcher is None:
        raise ServeError(f"no {pod.fetch.argv[0]} next to {sys.executable}")
    stop(state)
    ensure_free(port)
    volumes = lay_out(pod.volumes, state)
    fetch_mounts = local_mounts(pod.fetch, volumes)
    fetch = [fetcher, *localise(native_fetch_args(pod.fetch.argv[1:]), fetch_mounts)]
    fetch_env = {
        **os.environ,
        **{k: local_path(v, fetch_mounts) for k, v in pod.fetch.env.items()},
    }
    done = subprocess.run(fetch, env=fetch_env, check=False)
    if done.returncode != 0:
        raise ServeError(f"{pod.name}: the model fetch exited with {done.returncode}")
    argv = native_argv(pod.server.argv, local_mounts(pod.server, volumes), port)
    argv[0] = str(llama_server)
    server_env = {**_without_llama_args(os.environ), **pod.server.env}
    process = spawn(argv, server_env, state, "server.log")
    wait_ready(f"{base}/health", process, state / "server.log")
    (state / "fingerprint").write_text(fingerprint)
    return Served(pod, f"{base}/v1", restarted=True)


def spawn(
    argv: list[str], env: Mapping[str, str], state: Path, log: str
) -> subprocess.Popen[bytes]:
    """Start `argv` in the background, in a session of its own (so `stop` signals its whole
    group), its output in `state`/`log`, its pid and start time in `state`/pid."""
    with (state / log).open("wb") as sink:
        process = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=state,
            start_new_session=True,
        )
    (state / "pid").write_text(f"{process.pid} {start_time(process.pid)}")
    return process


def ensure_free(port: int) -> None:
    """Refuse a port something listens on (a server's own earlier connections, in TIME_WAIT, do
    not count: servers bind with SO_REUSEADDR, as llama-server's HTTP library does).

    Raises:
        ServeError: something listens on `port` on loopback.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            raise ServeError(
                f"port {port} is taken by another process: stop it or pick --port"
            ) from None


def _without_llama_args(environ: Mapping[str, str]) -> dict[str, str]:
    # llama-server reads LLAMA_ARG_* too: only the deployed argv may configure it.
    return {k: v for k, v in environ.items() if not k.startswith("LLAMA_ARG_")}


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat, field 22): with the
    pid, it names one process, not whichever later reuses the number. "" where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _state_of(pid: int) -> str | None:
    """The process's state letter (R, S, Z …); None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _ours(state: Path) -> int | None:
    """The pid of the server `serve` started under `state`, if that very process still runs
    (not a zombie, not a later process that got the same pid)."""
    try:
        pid_text, _, started = (state / "pid").read_text().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _state_of(pid) in (None, "Z") or start_time(pid) != started:
        return None
    return pid


def is_running(state: Path) -> bool:
    """Whether the process `serve` started under `state` still runs, with its fingerprint."""
    return _ours(state) is not None and (state / "fingerprint").exists()


def stop(state: Path) -> bool:
    """Stop the server `serve` started under `state` (SIGTERM to its process group, SIGKILL
    after STOP_TIMEOUT_SECONDS) and delete the Secrets laid out for it; True if it was running."""
    pid = _ours(state)
    (state / "fingerprint").unlink(missing_ok=True)
    (state / "pid").unlink(missing_ok=True)
    _forget_secrets(state)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _state_of(pid) not in (None, "Z") and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _state_of(pid) not in (None, "Z"):
        _signal_group(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _forget_secrets(state: Path) -> None:
    """The keys and store credentials laid out for a server that no longer runs."""
    for path in (state / "volumes").glob("*/*"):
        if path.is_file() and not path.is_relative_to(state / "volumes" / "models"):
            path.unlink()
    (state / "client-key").unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not ours: its parent reaps it
        os.waitpid(pid, os.WNOHANG)


def stop_all(keep: Collection[str] = ()) -> list[str]:
    """Stop every process `serve` started (but those named in `keep`); the names of those
    that were running."""
    root = serve_root()
    states = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [state.name for state in states if state.name not in keep and stop(state)]


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, what: str = "llama-server"
) -> None:
    """Wait until `url` (a health route of `process`) answers 200, at most
    READY_TIMEOUT_SECONDS.

    Raises:
        ServeError: `process` exited (the tail of `log` follows) or was not ready in time.
    """
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ServeError(f"{what} exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                # Ours, not another listener's: the process must still run after its answer.
                if response.status == 200 and process.poll() is None:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ServeError(f"{what} not ready after {READY_TIMEOUT_SECONDS} s; see {log}")


def client_exports(url: str, key_file: Path) -> str:
    """The shell line that points the official OpenAI clients at `url` with the key in
    `key_file`: OPENAI_BASE_URL (openai-python 1.x and later, openai-node), OPENAI_API_BASE
    (older clients, LangChain)."""
    return (
        f"export OPENAI_BASE_URL={url} OPENAI_API_BASE={url} "
        f"OPENAI_API_KEY=$(cat {shlex.quote(str(key_file))})"
    )
