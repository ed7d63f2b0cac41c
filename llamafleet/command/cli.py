"""The `llamafleet` command: check, render, deploy, serve and watch stacks; `models` runs
modelsync."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from llamafleet.command import engine
from llamafleet.components.server_args import SERVER_PORT
from llamafleet.settings.load import SettingsError, load_stack_file, resolve_stack_file

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The `llamafleet` parser: one subcommand each, its handler in the `handler` default."""
    parser = argparse.ArgumentParser(prog="llamafleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a stack file's settings only")
    validate.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or file path")
    validate.set_defaults(handler=_validate)
    render = commands.add_parser(
        "render", help="run the program under Pulumi's mock monitor and write what it declares"
    )
    render.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or file path")
    render.add_argument("--out", type=Path, required=True, help="output directory")
    render.set_defaults(handler=_render)
    tiers = commands.add_parser(
        "local-tiers",
        help="print a stack's tiers as fake nodes, the JSON scripts/local-cluster takes",
    )
    tiers.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or file path")
    tiers.set_defaults(handler=_local_tiers)
    _add_engine_commands(commands)
    serve = commands.add_parser(
        "serve",
        help="run what the engine deployed for a stack natively (for a control plane that runs "
        "no containers, as `make up` does)",
    )
    serve.add_argument(
        "stack", help="stack name (for messages; the Deployments are found by label)"
    )
    serve.add_argument("--llama-server", type=Path, help="the native binary (not for --stop)")
    serve.add_argument(
        "--port",
        type=int,
        default=SERVER_PORT,
        help="the gateway's port (the endpoint); llama-server listens on the next one",
    )
    serve.add_argument("--stop", action="store_true", help="stop what `serve` started")
    serve.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Pulumi project directory, for the stack's outputs (its team keys)",
    )
    serve.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="the cluster to read from (default: the local control plane's, not $KUBECONFIG)",
    )
    serve.set_defaults(handler=_serve)
    _add_status_command(commands)
    # Everything after `models` is modelsync's, --help included.
    models = commands.add_parser(
        "models",
        add_help=False,
        help="model distribution: inspect, sync, import-ollama, fetch, verify (see `llamafleet "
        "models --help`)",
    )
    models.set_defaults(handler=_models, takes_rest=True)
    return parser


def _add_engine_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],  # pyright: ignore[reportPrivateUsage]
) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    common.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="Pulumi project directory (default: the repository root; for `local`, a project "
        "generated under the cache)",
    )
    p = commands.add_parser("preview", parents=[common], help="pulumi preview --diff")
    p.add_argument(
        "--expect-no-changes",
        action="store_true",
        help="exit 1 when anything would change (a drift check for CI)",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="read every resource's live state first, so changes made outside Pulumi show",
    )
    p.set_defaults(handler=_preview)
    u = commands.add_parser("up", parents=[common], help="pulumi up --refresh --yes")
    u.set_defaults(handler=_up)
    r = commands.add_parser("refresh", parents=[common], help="pulumi refresh --yes")
    r.set_defaults(handler=_refresh)
    d = commands.add_parser("destroy", parents=[common], help="pulumi destroy --yes")
    d.add_argument(
        "--remove", action="store_true", help="also remove the stack (its config file stays)"
    )
    d.set_defaults(handler=_destroy)
    k = commands.add_parser(
        "keys", parents=[common], help="print a team's current API keys: `<name> <key>` per line"
    )
    k.add_argument("team")
    k.set_defaults(handler=_keys)


def _add_status_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],  # pyright: ignore[reportPrivateUsage]
) -> None:
    status = commands.add_parser(
        "status",
        help="one screen per stack: per team, model and tier the replicas, queue, busy slots, "
        "tokens/s, digest and spills, and the firing alerts (from the API server and Prometheus)",
    )
    status.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    status.add_argument(
        "--json", action="store_true", help="print the same data as JSON (keys: `status.to_json`)"
    )
    status.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="the cluster's kubeconfig (default: for local the local control plane's; else the "
        "cluster's kubeconfig setting, $KUBECONFIG, ~/.kube/config)",
    )
    status.add_argument(
        "--prometheus",
        metavar="URL",
        default=None,
        help="Prometheus' base URL (default: for local the one `serve` runs, "
        "http://127.0.0.1:9090; else the cluster's prometheusUrl through the API server's "
        "service proxy)",
    )
    status.add_argument(
        "--cluster",
        default=None,
        help="which of the stack's clusters (default: its first, whose gateway is the endpoint)",
    )
    status.set_defaults(handler=_status)


def main(argv: list[str] | None = None) -> int:
    """Run one `llamafleet` command; returns its exit status: 0 done, 1 bad settings or a
    failed check, 2 an engine failure or a usage error, 130 interrupted. Every error is printed
    as one line (per problem) on stderr, never as a traceback."""
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    handler: Handler = args.handler
    try:
        return handler(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except engine.PolicyViolationError as exc:
        for problem in exc.problems:
            print(f"llamafleet {args.command} {args.stack}: policy: {problem}", file=sys.stderr)
        print(f"llamafleet {args.command} {args.stack}: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"llamafleet {args.command} {args.stack}: {exc.hint}", file=sys.stderr)
        return 1
    except engine.EngineError as exc:
        print(f"llamafleet {args.command} {getattr(args, 'stack', '')}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The machine's side (an output folder that is a file, a full disk): one line too.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"llamafleet {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"llamafleet {args.command}: interrupted; run it again to finish (a lock or pending "
            "operation left behind is taken care of then)",
            file=sys.stderr,
        )
        return 130


def _models(args: argparse.Namespace) -> int:
    from llamafleet.modelsync.cli import main as models_main  # noqa: PLC0415 (no Pulumi import)

    return models_main(args.rest, prog="llamafleet models")


def _validate(args: argparse.Namespace) -> int:
    _, path = resolve_stack_file(args.stack)
    settings = load_stack_file(path)
    tiers = sum(len(c.tiers) for c in settings.clusters.values())
    print(
        f"{path}: ok ({len(settings.models)} models, {tiers} tiers, {len(settings.tenants)} teams)"
    )
    return 0


def _render(args: argparse.Namespace) -> int:
    from llamafleet.command.render import render, write  # noqa: PLC0415 (Pulumi loads only to render)

    written = write(render(args.stack), args.out)
    print(f"wrote {len(written)} Kubernetes objects and resources.json to {args.out}")
    return 0


def _local_tiers(args: argparse.Namespace) -> int:
    from llamafleet.command.local_tiers import node_tiers  # noqa: PLC0415

    print(json.dumps(node_tiers(load_stack_file(resolve_stack_file(args.stack)[1])), indent=2))
    return 0


def _check_settings(args: argparse.Namespace) -> None:
    """The stack file is validated before the engine starts: one line per problem, with no
    engine output to read through, and rules that need the file itself (is a secret encrypted
    there) applied."""
    load_stack_file(engine.stack_config_file(args.stack, args.work_dir))


def _preview(args: argparse.Namespace) -> int:
    _check_settings(args)
    previewed = engine.preview(args.stack, args.work_dir, refresh=args.refresh)
    changed = previewed.changes
    print(f"{args.stack}: policy: {previewed.objects_checked} Kubernetes objects pass every rule")
    print(f"{args.stack}: would {_summary(changed)}" if changed else f"{args.stack}: no changes")
    for step in previewed.steps:
        print(f"  {step.op:<8} {step.type} {step.name}")
    if args.expect_no_changes and changed:
        print(f"drift: {args.stack} would change {changed}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    _check_settings(args)
    changed = engine.up(args.stack, args.work_dir)
    print(f"{args.stack}: {_summary(changed)}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    _check_settings(args)
    changed = engine.refresh(args.stack, args.work_dir)
    print(f"{args.stack}: {'no drift' if not changed else _summary(changed)}")
    return 0


def _destroy(args: argparse.Namespace) -> int:
    try:
        deleted = engine.destroy(args.stack, args.work_dir, remove=args.remove)
    except engine.NoStackError:
        print(f"{args.stack}: no stack, nothing to destroy")
        return 0
    print(f"{args.stack}: {_summary(deleted)}")
    return 0


def _summary(changed: dict[str, int]) -> str:
    if not changed:
        return "no changes"
    return ", ".join(f"{op} {n}" for op, n in sorted(changed.items()))


def _keys(args: argparse.Namespace) -> int:
    output = f"{args.team}-api-keys"
    keys = engine.outputs(args.stack, args.work_dir).get(output)
    if not isinstance(keys, dict):
        print(f"{args.stack} has no team {args.team!r} (no output {output})", file=sys.stderr)
        return 1
    for name, key in keys.items():  # pyright: ignore[reportUnknownVariableType]
        print(f"{name} {key}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from llamafleet.command import serve_gateway  # noqa: PLC0415

    return serve_gateway.command(
        args.stack,
        llama_server=args.llama_server,
        port=args.port,
        stop_only=args.stop,
        kubeconfig=args.kubeconfig,
        work_dir=args.work_dir,
    )


def _status(args: argparse.Namespace) -> int:
    from llamafleet.command import status_command  # noqa: PLC0415

    return status_command.command(
        args.stack,
        as_json=args.json,
        kubeconfig=args.kubeconfig,
        prometheus=args.prometheus,
        cluster=args.cluster,
    )


if __name__ == "__main__":
    sys.exit(main())
