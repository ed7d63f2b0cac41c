"""Run the real Pulumi engine through its Automation API: `llamafleet preview|up|destroy <stack>`.

A thin wrapper over `pulumi.automation.LocalWorkspace`, with the engine settings every run here
shares: state in a local file backend (`<work dir>/.pulumi`), the passphrase secrets provider,
no automatic plugin downloads (plugins are found on PATH), no update checks. The CLI and plugins
come from `scripts/bootstrap-engine` (`~/.cache/llamafleet/bin`) unless a `pulumi` is already on
PATH, in which case that one is used and the bootstrap directory is only searched for plugins.

Passphrase: `PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE` when set; otherwise a
random passphrase generated once into `~/.cache/llamafleet/passphrase` (mode 0600).
For the `local` stack, `KUBECONFIG` defaults to the one `scripts/local-cluster up` writes.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pulumi import automation as auto

REPO_ROOT = Path(__file__).resolve().parent.parent

# Operations in a preview/up summary that change nothing.
UNCHANGED_OPS = frozenset({"same", "read"})


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("LLAMAFLEET_CACHE", str(Path.home() / ".cache" / "llamafleet")))


def engine_bin_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where scripts/bootstrap-engine puts the CLI, the language host and the providers."""
    return cache_dir(environ) / "bin"


# Plugins scripts/bootstrap-engine cannot build: the Go module proxy refuses their modules
# (403 "This module version is not available" at every version). A Pulumi CLI installed the
# usual way ships the language host; `pulumi plugin install resource random` brings random.
UNBUILDABLE = {
    "pulumi-language-python": "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3",
    "pulumi-resource-random": "github.com/pulumi/pulumi-random/provider/v4",
}


def missing_engine_binaries(names: tuple[str, ...]) -> list[str]:
    """Which of `names` are neither on PATH nor in the bootstrap's bin directory, each with why
    (for a test's skip message)."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), str(engine_bin_dir())])
    missing: list[str] = []
    for name in names:
        if shutil.which(name, path=path) is None:
            module = UNBUILDABLE.get(name)
            missing.append(
                f"{name} (the Go module proxy refuses {module}; install the Pulumi CLI)"
                if module
                else f"{name} (run scripts/bootstrap-engine)"
            )
    return missing


def local_kubeconfig(environ: Mapping[str, str] | None = None) -> Path:
    """The kubeconfig scripts/local-cluster writes."""
    env = os.environ if environ is None else environ
    local = env.get("LLAMAFLEET_LOCAL_DIR", str(cache_dir(env) / "local"))
    return Path(local) / "kubeconfig"


def _passphrase_file(environ: Mapping[str, str]) -> Path:
    path = cache_dir(environ) / "passphrase"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path


def engine_env(
    work_dir: Path, stack: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment every Pulumi CLI call of this project runs with (added to os.environ)."""
    env = dict(os.environ if environ is None else environ)
    bin_dir = str(engine_bin_dir(env))
    path = env.get("PATH", os.defpath)
    if shutil.which("pulumi", path=path):
        path = os.pathsep.join([path, bin_dir])  # the user's own CLI first; plugins still found
    else:
        path = os.pathsep.join([bin_dir, path])
    out = {
        "PATH": path,
        "PULUMI_BACKEND_URL": (work_dir / ".pulumi").resolve().as_uri(),
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    if not env.get("PULUMI_CONFIG_PASSPHRASE") and not env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        out["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(_passphrase_file(env))
    if stack == "local" and not env.get("KUBECONFIG") and local_kubeconfig(env).exists():
        out["KUBECONFIG"] = str(local_kubeconfig(env))
    return out


def _pulumi_command(env: Mapping[str, str]) -> auto.PulumiCommand:
    found = shutil.which("pulumi", path=env["PATH"])
    if found is None:
        raise SystemExit(
            "no pulumi CLI on PATH and none in "
            f"{engine_bin_dir()}: run scripts/bootstrap-engine (or install Pulumi)"
        )
    # PulumiCommand(root=R) runs R/bin/pulumi and puts R/bin first on the plugins' PATH.
    return auto.PulumiCommand(root=str(Path(found).resolve().parent.parent))


def open_stack(stack: str, work_dir: Path | None = None) -> auto.Stack:
    """Select the stack, creating it (passphrase secrets) in the file backend if it is new."""
    root = (work_dir or REPO_ROOT).resolve()
    (root / ".pulumi").mkdir(exist_ok=True)
    env = engine_env(root, stack)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(root),
        env_vars=env,
        secrets_provider="passphrase",
        pulumi_command=_pulumi_command(env),
    )
    return auto.create_or_select_stack(stack_name=stack, work_dir=str(root), opts=opts)


def changes(summary: Mapping[auto.OpType, int] | Mapping[str, int] | None) -> dict[str, int]:
    """The operations of a change summary that change something (e.g. {"update": 1})."""
    out: dict[str, int] = {}
    for op, n in (summary or {}).items():
        name = str(getattr(op, "value", op))
        if name not in UNCHANGED_OPS and n:
            out[name] = n
    return out


def preview(
    stack: str, work_dir: Path | None = None, on_output: Callable[[str], object] | None = print
) -> dict[str, int]:
    """Run `pulumi preview --diff`; return what would change (empty: nothing)."""
    result = open_stack(stack, work_dir).preview(diff=True, on_output=on_output)
    return changes(result.change_summary)


def up(
    stack: str, work_dir: Path | None = None, on_output: Callable[[str], object] | None = print
) -> dict[str, int]:
    """Run `pulumi up --yes`; return what changed (empty: nothing)."""
    result = open_stack(stack, work_dir).up(diff=True, on_output=on_output)
    return changes(result.summary.resource_changes)


def destroy(
    stack: str,
    work_dir: Path | None = None,
    on_output: Callable[[str], object] | None = print,
    remove: bool = False,
) -> dict[str, int]:
    """Run `pulumi destroy --yes` (and `pulumi stack rm` when remove); return what was deleted."""
    st = open_stack(stack, work_dir)
    result = st.destroy(on_output=on_output)
    if remove:
        st.workspace.remove_stack(stack, preserve_config=True)
    return changes(result.summary.resource_changes)


def _work_dir(args: argparse.Namespace) -> Path | None:
    value: Path | None = args.work_dir
    return value


def _cmd_preview(args: argparse.Namespace) -> int:
    changed = preview(args.stack, _work_dir(args))
    if args.expect_no_changes and changed:
        print(f"drift: {args.stack} would change {changed}", file=sys.stderr)
        return 1
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    changed = up(args.stack, _work_dir(args))
    print(f"{args.stack}: {changed or 'no changes'}")
    return 0


def _cmd_destroy(args: argparse.Namespace) -> int:
    destroy(args.stack, _work_dir(args), remove=args.remove)
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the engine command add_commands registered (its handler is args.engine_handler)."""
    handler: Callable[[argparse.Namespace], int] = args.engine_handler
    try:
        return handler(args)
    except auto.CommandError as exc:
        print(f"pulumi failed: {exc}", file=sys.stderr)
        return 2


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],  # pyright: ignore[reportPrivateUsage]
) -> None:
    """Register `preview`, `up` and `destroy` on the project CLI.

    Each parser sets `engine_handler`; the CLI dispatches with `run_command(args)`.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    common.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Pulumi project directory (default: the repository root)",
    )
    p = subparsers.add_parser(
        "preview", parents=[common], help="pulumi preview --diff through the Automation API"
    )
    p.add_argument(
        "--expect-no-changes",
        action="store_true",
        help="exit 1 when anything would change (a drift check for CI)",
    )
    p.set_defaults(engine_handler=_cmd_preview)
    u = subparsers.add_parser("up", parents=[common], help="pulumi up --yes")
    u.set_defaults(engine_handler=_cmd_up)
    d = subparsers.add_parser("destroy", parents=[common], help="pulumi destroy --yes")
    d.add_argument(
        "--remove", action="store_true", help="also remove the stack (its config file stays)"
    )
    d.set_defaults(engine_handler=_cmd_destroy)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m infra.engine up local`) until the CLI wires it in."""
    parser = argparse.ArgumentParser(prog="llamafleet-engine", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
