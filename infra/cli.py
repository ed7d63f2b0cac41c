"""The `llamafleet` command: validate and render stacks; `models` runs modelsync."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from components.server_args import SERVER_PORT
from infra import engine
from infra.config import SettingsError, load_stack_file

DEFAULT_CACHE = Path.home() / ".cache" / "llamafleet"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamafleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a stack file's settings only")
    validate.add_argument("stack_file", type=Path)
    render = commands.add_parser(
        "render", help="run the program under Pulumi's mock monitor and write what it declares"
    )
    render.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or file path")
    render.add_argument("--out", type=Path, required=True, help="output directory")
    serve = commands.add_parser(
        "serve", help="fetch and serve a stack's models natively, exactly as its pods would"
    )
    serve.add_argument("stack")
    serve.add_argument("--llama-server", type=Path, help="the native binary (not for --stop)")
    serve.add_argument("--port", type=int, default=SERVER_PORT)
    serve.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="models and run state")
    serve.add_argument("--stop", action="store_true", help="stop what `serve` started")
    commands.add_parser("models", help="model distribution (see `llamafleet models --help`)")
    engine.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["models"]:
        from modelsync.cli import main as models_main  # noqa: PLC0415 (no Pulumi import)

        return models_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    if getattr(args, "engine_handler", None) is not None:
        return engine.run_command(args)
    try:
        if args.command == "validate":
            return _validate(args.stack_file)
        if args.command == "serve":
            return _serve(args.stack, args.llama_server, args.port, args.cache, args.stop)
        return _render(args.stack, args.out)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1


def _validate(path: Path) -> int:
    settings = load_stack_file(path)
    tiers = sum(len(c.tiers) for c in settings.clusters.values())
    print(
        f"{path}: ok ({len(settings.models)} models, {tiers} tiers, {len(settings.tenants)} teams)"
    )
    return 0


def _render(stack: str, out: Path) -> int:
    from infra.render import render, write  # noqa: PLC0415 (Pulumi loads only to render)

    written = write(render(stack), out)
    print(f"wrote {len(written)} Kubernetes objects and resources.json to {out}")
    return 0


def _serve(stack: str, llama_server: Path | None, port: int, cache: Path, stop_only: bool) -> int:
    from infra import serve_local  # noqa: PLC0415 (Pulumi loads only to render)

    pods = serve_local.native_pods(stack)
    if stop_only:
        for pod in pods:
            print(f"{pod.name}: {'stopped' if serve_local.stop(pod, cache) else 'not running'}")
        return 0
    if llama_server is None:
        print("serve: --llama-server is required to start", file=sys.stderr)
        return 2
    if len(pods) != 1:
        print(f"serve runs one Deployment natively; {stack} renders {len(pods)}", file=sys.stderr)
        return 1
    try:
        url, key_file = serve_local.start(pods[0], llama_server, cache, port)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"serve {stack}: {exc}", file=sys.stderr)
        return 1
    print(f"{pods[0].name} is ready.")
    print(f"export OPENAI_API_BASE={url} OPENAI_API_KEY=$(cat {key_file})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
