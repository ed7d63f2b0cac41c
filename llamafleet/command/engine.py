"""Run the real Pulumi engine on this project's program, inline, through the Automation API.

The program (`llamafleet.program.stack.main`) runs in this Python process: the SDK serves the
language runtime itself and passes `--client` to the CLI, so no `pulumi-language-python` plugin is
needed (pulumi/automation/_stack.py; pkg/v3 cmd/pulumi/operations/io.go). It is the same program
`pulumi up` runs through `llamafleet/program/__main__.py`, under the same project name, so a
platform team's own `pulumi up --stack <stack>` and `llamafleet up <stack>` share one program and
one state.

Backend and secrets: the user's own (`pulumi login`, or PULUMI_BACKEND_URL; the stack's secrets
provider, and for a stack the backend does not hold yet the one its stack file names in
`secretsprovider`, which `pulumi stack init` alone would ignore for the passphrase). Only `local`,
run without --work-dir, defaults to a file backend and a passphrase
under the cache (`~/.cache/llamafleet/pulumi`), and runs from a project directory generated
there, so the engine never writes into the checkout (stack creation writes its encryption salt
into the stack's config file; for `local` that file is generated from `stacks/Pulumi.local.yaml`).

The CLI and plugins come from `scripts/bootstrap-engine` (`~/.cache/llamafleet/bin`), unless a
`pulumi` is on PATH: then that CLI runs and the bootstrap directory still serves the plugins
(`pulumi-resource-kubernetes`, `pulumi-resource-pulumi-python` for dynamic providers).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pulumi
import yaml
from pulumi import automation as auto

from llamafleet import REPO_ROOT
from llamafleet.command.engine_output import EngineOutput
from llamafleet.command.state_moves import move_providers
from llamafleet.policy.registered import RegisteredObjects, RegistrationGate
from llamafleet.policy.rules import Findings
from llamafleet.settings.load import stack_file

LOCAL_STACK = "local"
# Operations in a change summary that change nothing.
UNCHANGED_OPS = frozenset({"same", "read"})
# Keys of a stack config file that the secrets provider writes (pkg/v3 workspace.ProjectStack).
SECRETS_PROVIDER_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt")

Show = Callable[[str], object]


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$LLAMAFLEET_CACHE, default ~/.cache/llamafleet: builds, binaries, local state."""
    env = os.environ if environ is None else environ
    return Path(env.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache" / "llamafleet")))


def engine_bin_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where scripts/bootstrap-engine puts the CLI, the plugins and the control plane."""
    return cache_dir(environ) / "bin"


def local_kubeconfig(environ: Mapping[str, str] | None = None) -> Path:
    """The kubeconfig scripts/local-cluster writes."""
    env = os.environ if environ is None else environ
    local = env.get("LLAMAFLEET_LOCAL_DIR", str(cache_dir(env) / "local"))
    return Path(local) / "kubeconfig"


def local_pulumi_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The `local` stack's own Pulumi directory: `state/` (file backend), `project/`, and the
    passphrase. Outside scripts/local-cluster's directory, which `down --purge` deletes."""
    return cache_dir(environ) / "pulumi"


@dataclass(frozen=True)
class Target:
    """Where a stack runs: its project directory and the environment the CLI gets."""

    stack: str
    project_dir: Path
    env: dict[str, str]
    # The secrets provider a new stack gets (None: the backend's default).
    secrets_provider: str | None


def target(stack: str, work_dir: Path | None = None) -> Target:
    """`local` without a work dir: the generated project under the cache, its file backend and
    passphrase, and the local control plane (whatever $KUBECONFIG says: `make up` must never
    deploy into the cluster a developer's shell points at). Anything else: the project in
    `work_dir` (default: the repository root) with the user's backend, secrets provider and
    kubeconfig."""
    env = dict(os.environ)
    extra = _tool_env(env)
    if stack == LOCAL_STACK and work_dir is None:
        home = local_pulumi_dir(env)
        project = write_local_project(home / "project", REPO_ROOT)
        (home / "state").mkdir(parents=True, exist_ok=True)
        extra["PULUMI_BACKEND_URL"] = (home / "state").as_uri()
        if not env.get("PULUMI_CONFIG_PASSPHRASE") and not env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
            extra["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(_passphrase_file(home))
        extra["KUBECONFIG"] = str(local_kubeconfig(env))
        return Target(stack, project, extra, "passphrase")
    committed = committed_secrets_provider(stack, work_dir)
    return Target(stack, (work_dir or REPO_ROOT).resolve(), extra, committed)


def committed_secrets_provider(stack: str, work_dir: Path | None = None) -> str | None:
    """The `secretsprovider` `stack`'s stack file names (`awskms://…`, `passphrase`…); None
    where it names none or cannot be read (the settings check, or opening the project, says
    why). Pulumi keeps the file's `encryptedkey` when a stack is created with the same
    provider, so the file's `secure:` values stay readable on a new backend."""
    try:
        document: Any = yaml.safe_load(stack_config_file(stack, work_dir).read_text())
    except (EngineError, OSError, yaml.YAMLError):
        return None
    provider = document.get("secretsprovider") if isinstance(document, dict) else None
    return provider if isinstance(provider, str) and provider else None


def _tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """PATH with the CLI and the plugins; the dynamic providers' Python; no update checks."""
    bin_dir = str(engine_bin_dir(env))
    path = env.get("PATH", os.defpath)
    if shutil.which("pulumi", path=path):
        path = os.pathsep.join([path, bin_dir])  # the user's own CLI first; plugins still found
    else:
        path = os.pathsep.join([bin_dir, path])
    return {
        "PATH": path,
        # pulumi-resource-pulumi-python runs "${PULUMI_PYTHON_CMD:-python3} -m pulumi.dynamic":
        # this interpreter, which has the program's packages.
        "PULUMI_PYTHON_CMD": sys.executable,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }


def _passphrase_file(home: Path) -> Path:
    """The local stack's passphrase, made once (mode 0600): written to a private temporary file,
    then linked into place, so a concurrent first run finds either no file or a whole one."""
    path = home / "passphrase"
    if path.exists():
        return path
    home.mkdir(parents=True, exist_ok=True)
    temporary = home / f".passphrase.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another run made it first: use theirs
    finally:
        temporary.unlink()
    return path


def write_local_project(project: Path, repo: Path) -> Path:
    """The `local` stack's project directory: the repository's Pulumi.yaml (stack files beside
    it) and `Pulumi.local.yaml` = the repository's `config:` plus the secrets-provider keys the
    engine wrote into the previous copy. Rewritten on every run, so edits to
    `stacks/Pulumi.local.yaml` apply and the checkout is never written to."""
    project.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = yaml.safe_load((repo / "Pulumi.yaml").read_text())
    settings.pop("stackConfigDir", None)
    settings["main"] = str(repo / "llamafleet" / "program")
    _write(project / "Pulumi.yaml", settings)
    config_file = project / f"Pulumi.{LOCAL_STACK}.yaml"
    previous: dict[str, Any] = {}
    if config_file.exists():
        previous = yaml.safe_load(config_file.read_text()) or {}
    document: dict[str, Any] = yaml.safe_load(stack_file(LOCAL_STACK).read_text()) or {}
    document.update({k: previous[k] for k in SECRETS_PROVIDER_KEYS if k in previous})
    _write(config_file, document)
    return project


def _write(path: Path, document: Mapping[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    temporary.replace(path)


def stack_config_file(stack: str, work_dir: Path | None = None) -> Path:
    """The stack file a run of `stack` reads its settings from: the repository's (`local`'s
    generated copy is made from it), or the one in `work_dir`'s stackConfigDir.

    Raises:
        EngineError: `work_dir` holds no readable Pulumi.yaml.
    """
    if work_dir is None:
        return stack_file(stack)
    try:
        settings: dict[str, Any] = yaml.safe_load((work_dir / "Pulumi.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"{work_dir} holds no readable Pulumi.yaml: {exc}") from None
    return work_dir / str(settings.get("stackConfigDir", ".")) / f"Pulumi.{stack}.yaml"


def project_name(project_dir: Path) -> str:
    """The Pulumi project's `name`, from `project_dir`/Pulumi.yaml.

    Raises:
        EngineError: the file is missing, is not YAML, or names no project.
    """
    path = project_dir / "Pulumi.yaml"
    try:
        settings: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EngineError(f"cannot read {path}: {exc}") from None
    name = settings.get("name") if isinstance(settings, dict) else None  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
    if not isinstance(name, str) or not name:
        raise EngineError(f"{path} names no project (`name:`)")
    return name


def _pulumi_command(env: Mapping[str, str]) -> auto.PulumiCommand:
    found = shutil.which("pulumi", path=env["PATH"])
    if found is None:
        raise EngineError(
            f"no pulumi CLI on PATH and none in {engine_bin_dir()}: run scripts/bootstrap-engine"
        )
    # PulumiCommand(root=R) runs R/bin/pulumi and puts R/bin first on the plugins' PATH.
    return auto.PulumiCommand(root=str(Path(found).resolve().parent.parent))


class EngineError(Exception):
    """An engine run that failed, as one line for the user."""


class NoStackError(EngineError):
    """The backend has no such stack (and the command does not make one)."""


NOTHING_CHANGED: Final = "nothing changed"
NOT_SHOWN_IN_PREVIEW: Final = (
    "need values a preview does not show (known only in the update, or a secret)"
)
UP_CHECKS_THEM: Final = (
    f"some rules {NOT_SHOWN_IN_PREVIEW}: `llamafleet up` checks each such object as it is "
    "registered, before it is created"
)
REFUSED_IN_UPDATE: Final = (
    "those objects were not created or changed; the update stopped there, and what it did "
    "before stands (any other error is above; `llamafleet status`)"
)


class PolicyViolationError(EngineError):
    """Kubernetes objects break policy rules: `problems`, one line each (`rules.violations`).
    The message says what happened to the stack (`outcome`) and, where some lines are rules a
    preview could not check, that `up` checks them once the values are known (`hint`)."""

    def __init__(
        self, problems: list[str], outcome: str = NOTHING_CHANGED, hint: str | None = None
    ) -> None:
        super().__init__(f"{len(problems)} policy violation(s); {outcome}")
        self.problems = problems
        self.hint = hint


def open_stack(
    stack: str,
    work_dir: Path | None = None,
    program: auto.PulumiFn | None = None,
    create: bool = True,
    tmpdir: Path | None = None,
) -> auto.Stack:
    """Select the stack with `program` (default: llamafleet's, `llamafleet.program.stack.main`)
    bound inline, creating it if it is new and `create`; the CLI and its plugins get `tmpdir`
    as TMPDIR where one is given. Raises EngineError (one line) where the
    backend refuses (not logged in, no passphrase) or, without `create`, the stack is absent.

    Raises:
        NoStackError: without `create`, the backend has no such stack (the Automation API's
            StackNotFoundError).
        EngineError: the CLI refused (its last `error:` line), or there is no pulumi CLI.
    """
    program = _program(program)
    where = target(stack, work_dir)
    env = where.env if tmpdir is None else {**where.env, "TMPDIR": str(tmpdir)}
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(where.project_dir),
        env_vars=env,
        secrets_provider=where.secrets_provider,
        pulumi_command=_pulumi_command(where.env),
    )
    name = project_name(where.project_dir)
    select = auto.create_or_select_stack if create else auto.select_stack
    try:
        return select(stack_name=stack, project_name=name, program=program, opts=opts)
    except auto.StackNotFoundError:
        raise NoStackError(f"no stack {stack} in this backend") from None
    except auto.CommandError as exc:
        raise EngineError(command_error_line(str(exc))) from None


def _program(program: auto.PulumiFn | None) -> auto.PulumiFn:
    """`program`, or llamafleet's (`llamafleet.program.stack.main`) where it is None."""
    if program is None:
        from llamafleet.program.stack import main  # noqa: PLC0415 (loads the components)

        return main
    return program


def changes(summary: Mapping[auto.OpType, int] | Mapping[str, int] | None) -> dict[str, int]:
    """The operations of a change summary that change something (e.g. {"update": 1})."""
    out: dict[str, int] = {}
    for op, n in (summary or {}).items():
        name = str(getattr(op, "value", op))
        if name not in UNCHANGED_OPS and n:
            out[name] = n
    return out


@dataclass(frozen=True)
class Step:
    """One resource a preview would touch: its operation, type and name."""

    op: str
    type: str
    name: str


def engine_log(stack: str, operation: str) -> Path:
    """Where the engine's whole output of each `operation` on `stack` is appended."""
    return cache_dir() / "logs" / f"engine-{stack}-{operation}.log"


@dataclass(frozen=True)
class Preview:
    """What a preview found: what would change (counts; empty: nothing), each step that changes
    something, and how many Kubernetes objects passed the policy rules."""

    changes: dict[str, int]
    steps: list[Step]
    objects_checked: int


def preview(
    stack: str,
    work_dir: Path | None = None,
    show: Show = print,
    program: auto.PulumiFn | None = None,
    *,
    refresh: bool = False,
) -> Preview:
    """`pulumi preview --diff` of `program` (default: llamafleet's), after reading every
    resource's live state where `refresh` (so what changed outside Pulumi shows as a change);
    then the policy rules over every Kubernetes object the preview registers, unchanged ones too.

    Raises:
        PolicyViolationError: an object breaks a rule, or a rule needs a value the preview does
            not show (llamafleet/policy/registered.py).
    """
    previewed, found = _preview(stack, work_dir, show, program, refresh=refresh)
    if found.lines():
        hint = UP_CHECKS_THEM if found.not_known_yet else None
        raise PolicyViolationError(found.lines(), hint=hint)
    return previewed


def _preview(
    stack: str,
    work_dir: Path | None,
    show: Show,
    program: auto.PulumiFn | None,
    *,
    refresh: bool = False,
) -> tuple[Preview, Findings]:
    """`preview`, returning the policy rules' findings instead of raising on them."""
    steps: list[Step] = []
    registered = RegisteredObjects()

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None:
            return
        meta = pre.metadata
        registered.add(meta.urn, meta.type, None if meta.new is None else meta.new.inputs)
        if str(meta.op.value) not in UNCHANGED_OPS:
            steps.append(Step(str(meta.op.value), meta.type, meta.urn.rsplit("::", 1)[-1]))

    result = _operate(
        stack,
        work_dir,
        "preview",
        show,
        lambda st, out: st.preview(
            diff=True,
            refresh=refresh,
            color="never",
            on_output=out.stdout,
            on_error=out.stderr,
            on_event=on_event,
        ),
        program=program,
    )
    previewed = Preview(changes(result.change_summary), steps, len(registered.objects))
    return previewed, registered.findings()


def up(
    stack: str,
    work_dir: Path | None = None,
    show: Show = print,
    program: auto.PulumiFn | None = None,
) -> dict[str, int]:
    """`pulumi up --refresh --yes` of `program` (default: llamafleet's), once its preview passed
    the policy rules: the state is refreshed first, so what changed behind Pulumi's back (a
    deleted Deployment, a lost bucket) is put back. Returns what changed.

    The update runs with a RegistrationGate: each Kubernetes object is checked again as it is
    registered, with the values the preview could not show (an image built by this update)
    known, and one that breaks a rule is never sent to the cluster.

    Raises:
        PolicyViolationError: the preview found an object that breaks a rule (nothing is
            changed), or the gate refused objects during the update (those are not created or
            changed; what the update did before stands).
        EngineError: the engine failed otherwise.
    """
    previewed, found = _preview(stack, work_dir, lambda line: None, program)
    if found.broken:
        raise PolicyViolationError(found.broken)
    checked = previewed.objects_checked
    if found.not_known_yet:
        show(
            f"{stack}: policy: {checked} Kubernetes objects previewed; "
            f"{len(found.not_known_yet)} rule(s) {NOT_SHOWN_IN_PREVIEW}, checked as each object "
            "is registered:"
        )
        for line in found.not_known_yet:
            show(f"  {line}")
    else:
        show(f"{stack}: policy: {checked} Kubernetes objects pass every rule (previewed first)")
    gate = RegistrationGate()
    fleet = _program(program)

    def gated() -> None:
        pulumi.runtime.register_resource_transform(gate)
        fleet()

    try:
        result = _operate(
            stack,
            work_dir,
            "up",
            show,
            lambda st, out: st.up(
                diff=True, refresh=True, color="never", on_output=out.stdout, on_error=out.stderr
            ),
            program=gated,
        )
    except EngineError:
        if gate.refused:
            raise PolicyViolationError(gate.refused, REFUSED_IN_UPDATE) from None
        raise
    if gate.refused:  # the engine went on although the gate refused: never report a pass
        raise PolicyViolationError(gate.refused, REFUSED_IN_UPDATE)
    show(f"{stack}: policy: {gate.checked} Kubernetes objects checked as they were registered")
    return changes(result.summary.resource_changes)


def refresh(stack: str, work_dir: Path | None = None, show: Show = print) -> dict[str, int]:
    """`pulumi refresh --yes`; the drift it found and wrote into the state (empty: none)."""
    result = _operate(
        stack,
        work_dir,
        "refresh",
        show,
        lambda st, out: st.refresh(color="never", on_output=out.stdout, on_error=out.stderr),
        create=False,
    )
    return changes(result.summary.resource_changes)


def destroy(
    stack: str, work_dir: Path | None = None, show: Show = print, remove: bool = False
) -> dict[str, int]:
    """`pulumi destroy --yes` (and `pulumi stack rm`, keeping its config, when `remove`).

    Raises:
        EngineError: the destroy failed (NoStackError where the backend has no such stack:
            none is made), or `pulumi stack rm` did.
    """
    result = _operate(
        stack,
        work_dir,
        "destroy",
        show,
        lambda st, out: st.destroy(color="never", on_output=out.stdout, on_error=out.stderr),
        create=False,
    )
    if remove:
        try:
            open_stack(stack, work_dir).workspace.remove_stack(stack, preserve_config=True)
        except auto.CommandError as exc:
            raise EngineError(command_error_line(str(exc))) from None
    return changes(result.summary.resource_changes)


def outputs(stack: str, work_dir: Path | None = None) -> dict[str, Any]:
    """The stack's outputs, secrets decrypted (for `llamafleet keys`); EngineError if there is
    no such stack.

    Raises:
        EngineError: the CLI could not read the outputs (NoStackError: no such stack).
    """
    st = open_stack(stack, work_dir, create=False)
    try:
        return {name: out.value for name, out in st.outputs().items()}
    except auto.CommandError as exc:
        raise EngineError(command_error_line(str(exc))) from None


Operation = Callable[[auto.Stack, EngineOutput], Any]


def _operate(
    stack: str,
    work_dir: Path | None,
    name: str,
    show: Show,
    operation: Operation,
    *,
    create: bool = True,
    program: auto.PulumiFn | None = None,
) -> Any:
    """Run `operation` with the engine's output shown through `show` (tracebacks collapsed) and
    kept whole in engine_log(stack, name). A lock left by an interrupted run of this machine is
    released once and the operation retried, after one line saying so. Failures are one-line
    EngineErrors: a live run (or one that took the lock meanwhile) holds the stack's lock, or
    the operation failed. Empty attribute files a killed run left beside the checkpoint are
    removed first (repair_interrupted_checkpoint), with one line each."""
    backend_env = {**os.environ, **target(stack, work_dir).env}
    for emptied in repair_interrupted_checkpoint(stack, backend_env):
        print(
            f"llamafleet: an earlier run on {stack} was killed while writing its state and left "
            f"{emptied} empty; removed it (the state itself is whole)",
            file=sys.stderr,
        )
    # A TMPDIR of the run's own (mode 0700), removed with all in it when the run ends: the
    # Kubernetes provider writes each kubeconfig it is given as contents, credentials included,
    # to a temporary file for Helm and never removes it (pulumi-kubernetes
    # pkg/provider/util.go, writeKubeconfigToFile).
    with tempfile.TemporaryDirectory(prefix="llamafleet-engine-") as private:
        st = open_stack(stack, work_dir, program, create=create, tmpdir=Path(private))
        return _operate_in(stack, st, name, show, operation)


def _operate_in(stack: str, st: auto.Stack, name: str, show: Show, operation: Operation) -> Any:
    """`_operate` on the opened stack.

    Raises:
        EngineError: the stack's lock is held by a live run, or the operation failed.
    """
    if name != "preview":
        move_state(st, stack)
    log = engine_log(stack, name)
    try:
        return _run(stack, st, operation, EngineOutput(log, show))
    except auto.ConcurrentUpdateError as exc:
        holder = stale_lock(str(exc))
        if holder is None:
            raise EngineError(_locked_line(stack, str(exc))) from None
        print(
            f"llamafleet: an earlier run on {stack} (pid {holder}) was interrupted and left its "
            "lock; released it and going on (the engine reports any operation it left pending)",
            file=sys.stderr,
        )
    try:
        st.cancel()
        return _run(stack, st, operation, EngineOutput(log, show))
    except auto.ConcurrentUpdateError as exc:  # another run took the lock meanwhile
        raise EngineError(_locked_line(stack, str(exc))) from None
    except auto.CommandError as exc:
        raise EngineError(command_error_line(str(exc))) from None


def repair_interrupted_checkpoint(stack: str, env: Mapping[str, str]) -> list[Path]:
    """Remove the empty attribute files a killed run can leave beside a stack's checkpoint in a
    file backend; returns them.

    The file backend (gocloud.dev/blob/fileblob) writes a blob's `.attrs` sidecar in place,
    beside the blob's temporary file, and renames the blob after: a SIGKILL in between leaves
    the checkpoint whole but its sidecar empty, and every later run stops with "failed to load
    checkpoint: EOF" (the sidecar is gob-decoded). A missing sidecar is read as no attributes,
    so an empty one can go. Other backends are left alone.
    """
    url = env.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        return []
    stacks = Path(urllib.parse.urlparse(url).path) / ".pulumi" / "stacks"
    candidates = [*stacks.glob(f"*/{stack}.json*.attrs"), *stacks.glob(f"{stack}.json*.attrs")]
    emptied = [path for path in candidates if path.is_file() and path.stat().st_size == 0]
    for path in emptied:
        path.unlink()
    return emptied


def move_state(st: auto.Stack, stack: str) -> int:
    """Rewrite the stack's dynamic providers that still name their modules' paths before the
    `llamafleet` package (state_moves), once: the state before is kept in
    `<cache>/state-backups/` (mode 0600) and one line says so. Returns how many resources moved.

    Raises:
        EngineError: the state could not be exported or imported (one line; the stack's state
            is as it was when the import failed, and the backup is kept).
    """
    try:
        exported = st.export_stack()
        moved, count = move_providers(exported.deployment or {})
        if not count:
            return 0
        backup = cache_dir() / "state-backups" / f"{stack}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        backup.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            json.dump({"version": exported.version, "deployment": exported.deployment}, out)
        st.import_stack(auto.Deployment(version=exported.version, deployment=moved))
    except auto.CommandError as exc:
        raise EngineError(command_error_line(str(exc))) from None
    print(
        f"llamafleet: {stack}: {count} dynamic resources named their providers by the module "
        f"paths before the llamafleet package; moved them (state before: {backup})",
        file=sys.stderr,
    )
    return count


def _run(stack: str, st: auto.Stack, operation: Operation, output: EngineOutput) -> Any:
    """`operation`, with Ctrl-C left to the engine: the CLI (in this process group) gets the
    SIGINT too and cancels safely (finishes what is in flight, saves the state, releases its
    lock); this process waits for it. A second Ctrl-C stops waiting.

    Raises:
        ConcurrentUpdateError: as the Automation API raised it (the stack is locked), so that
            _operate can release a stale lock.
        EngineError: the operation failed: interrupted, the CLI's own diagnosis, or errors
            already shown (the whole output in the engine log).
    """
    interrupted = False

    def on_sigint(_signum: int, _frame: object) -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True
        print("llamafleet: stopping safely; Ctrl-C again to stop waiting", file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        return operation(st, output)
    except auto.ConcurrentUpdateError:
        raise
    except auto.CommandError as exc:
        if interrupted:
            raise EngineError(
                f"interrupted: the engine stopped safely; run it again to finish {stack}"
            ) from None
        if not output.errors:
            raise EngineError(command_error_line(str(exc))) from None
        raise EngineError(f"failed: the errors are above (whole output: {output.log})") from None
    finally:
        output.close()
        if main_thread:
            signal.signal(signal.SIGINT, previous)


# "  file:///…/x.json: created by root@host (pid 4242) at 2026-11-30T12:00:00Z" (diy/lock.go)
_LOCK_LINE = re.compile(r"created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\)")


def stale_lock(message: str) -> int | None:
    """The pid of the lock holder named in a "currently locked" error, if every holder is a
    process of this machine that no longer runs (so the lock can be released safely)."""
    holders = list(_LOCK_LINE.finditer(message))
    if not holders:
        return None
    for holder in holders:
        if holder["host"] != socket.gethostname() or _alive(int(holder["pid"])):
            return None
    return int(holders[0]["pid"])


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (killed, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: the signal check is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _locked_line(stack: str, message: str) -> str:
    holder = _LOCK_LINE.search(message)
    who = f" by {holder['user']}@{holder['host']} (pid {holder['pid']})" if holder else ""
    return f"{stack} is being updated{who}; wait for that run to end, then run again"


def command_error_line(message: str) -> str:
    """The CLI's own diagnosis out of a CommandError (`code: N / stdout: … / stderr: …`): its
    last `error:` line, with what to do where that is known; else its first line."""
    lines = [
        line.strip().removeprefix("stdout: ").removeprefix("stderr: ")
        for line in message.splitlines()
    ]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if not errors:
        return next((line for line in lines if line), "pulumi failed")
    error = errors[-1]
    if "PULUMI_ACCESS_TOKEN" in error:
        error += " (log in to your backend: `pulumi login <url>`, or set PULUMI_BACKEND_URL)"
    return error
