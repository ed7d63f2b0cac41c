"""The `modelsync` command line (mounted by the project CLI as `llamafleet models`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, cast

from llamafleet.modelsync.digest import format_digest, hash_file, parse_digest
from llamafleet.modelsync.errors import ModelSyncError, SourceError
from llamafleet.modelsync.failures import (
    FETCH_EXIT_STATUS,
    REPORTED,
    describe_failure,
    failure_reason,
    one_line,
)
from llamafleet.modelsync.fetch import (
    FetchResult,
    MismatchedObjects,
    fetch_model,
    fetch_model_files,
)
from llamafleet.modelsync.fetch_metrics import FetchMetrics, serving_metrics
from llamafleet.modelsync.fetch_retry import fetch_until_done
from llamafleet.modelsync.gguf import read_raw
from llamafleet.modelsync.hashcache import HashCache
from llamafleet.modelsync.ollama import default_models_dir, discover_ollama
from llamafleet.modelsync.parts import ModelParts, check_part, role_of, with_parts
from llamafleet.modelsync.plan import plan_sync
from llamafleet.modelsync.progress import progress_for
from llamafleet.modelsync.servable import servable_header
from llamafleet.modelsync.sources import ModelSource, discover_files
from llamafleet.modelsync.splits import shard_set, with_split_shards
from llamafleet.modelsync.store import RemoteStore
from llamafleet.modelsync.sync import SyncTuning, sync_sources
from llamafleet.modelsync.upload import DEFAULT_MEMORY_BUDGET, DEFAULT_PART_SIZE, MIB, MIN_PART_SIZE
from llamafleet.modelsync.verify import VerifyResult, verify_local, verify_remote

Handler = Callable[[argparse.Namespace], int]


def _emit(args: argparse.Namespace, document: object, lines: Sequence[str]) -> None:
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(lines))


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def _cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.file)
    raw = read_raw(path)
    metadata = raw.metadata
    role = role_of(metadata)
    if role is not None:
        # The model is not at hand: its architecture is matched when they sync together.
        check_part(path, role, None, metadata)
        architecture = metadata.get("general.architecture")
        document = {"role": role, "architecture": architecture, **_file_facts(path, args.digest)}
        _emit(args, document, [f"{key}: {value}" for key, value in document.items()])
        return 0
    header = servable_header(raw)
    if not header.has_chat_template:
        print(
            f"note: {path} carries no chat template (tokenizer.chat_template): llama-server "
            "formats chats as chatml; set the model's chatTemplate to its built-in template",
            file=sys.stderr,
        )
    document = _file_facts(path, args.digest)
    if header.split is not None:
        document["shards"] = [
            _file_facts(shard, args.digest) for shard in shard_set(path).shards[1:]
        ]
    document["gguf"] = header.to_json()
    lines = [f"{key}: {value}" for key, value in document.items() if key != "gguf"]
    lines += [f"{key}: {value}" for key, value in header.to_json().items()]
    _emit(args, document, lines)
    return 0


def _file_facts(path: Path, digest: bool) -> dict[str, object]:
    """`{"digest"?, "sizeBytes"}` of a file, as settings pin each shard of a split model.

    Raises:
        SourceError: the file cannot be read.
    """
    facts: dict[str, object] = {}
    if digest:
        try:
            facts["digest"] = format_digest(hash_file(path))
        except OSError as err:
            raise SourceError(f"{path}: cannot read: {err.strerror or err}") from err
    facts["sizeBytes"] = path.stat().st_size
    return facts


def _store(args: argparse.Namespace) -> RemoteStore:
    return RemoteStore.open(
        args.store,
        args.endpoint_url,
        max_connections=args.concurrency + 4,
        checksum_headers=args.checksum_headers,
    )


def _sync_sources(
    args: argparse.Namespace,
    sources: list[ModelSource],
    verify: bool,
    report: Callable[[dict[str, object], list[str]], None] | None = None,
) -> int:
    """Plan or run the sync and print its result; `report` may add to the JSON document and
    the human lines before they are printed."""
    store = _store(args)
    cache = HashCache(Path(args.cache_dir) if args.cache_dir else None)
    with progress_for(args.json) as progress:
        if args.dry_run:
            plan = plan_sync(sources, store, cache, verify_known=verify, progress=progress)
            lines = [f"{m.action.value:9} {m.name}" for m in plan.models]
            document = plan.to_json()
            if report is not None:
                report(document, lines)
            _emit(args, document, lines)
            return 0
        tuning = SyncTuning(
            part_size=args.part_size * MIB,
            part_workers=args.concurrency,
            memory_budget=max(DEFAULT_MEMORY_BUDGET, args.concurrency * args.part_size * MIB),
        )
        result = sync_sources(
            sources, store, cache=cache, verify_known=verify, progress=progress, tuning=tuning
        )
    lines = [
        f"{model.action:9} {model.name}  {model.digest or '-'}"
        + (f"  {_human_size(model.bytes_uploaded)} sent" if model.bytes_uploaded else "")
        for model in result.models
    ]
    lines.append(f"manifest {'written' if result.manifest_written else 'unchanged'}")
    document = result.to_json()
    if report is not None:
        report(document, lines)
    _emit(args, document, lines)
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    sources = with_split_shards(discover_files(Path(args.source)), name_by_prefix=True)
    if args.adapter or args.projector:
        given = {Path(path).resolve() for path in [*(args.adapter or ()), args.projector] if path}
        # A folder holding the model and its parts: the parts are not models of their own.
        sources = [source for source in sources if source.path.resolve() not in given]
        models = [source.name for source in sources if source.member_of is None]
        if len(models) != 1:
            raise SourceError(
                f"{args.source}: --adapter and --projector belong to one model; give its file "
                f"(or a split model's first shard), not a folder of {len(models)}"
            )
        parts = ModelParts(
            tuple(Path(path) for path in args.adapter or ()),
            Path(args.projector) if args.projector else None,
        )
        sources = with_parts(sources, {models[0]: parts})
    return _sync_sources(args, sources, verify=False)


# import-ollama's exit status when some models were imported and others skipped.
PARTIAL_IMPORT = 3


def _cmd_import_ollama(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    scan = discover_ollama(models_dir, args.models)
    if not scan.sources:
        reasons = "; ".join(scan.skipped.values())
        raise SourceError(f"no model in {models_dir} can be imported: {reasons}")

    def report(document: dict[str, object], lines: list[str]) -> None:
        document["skipped"] = scan.skipped
        document["suggestedSettings"] = {s.name: _suggestion(s) for s in scan.sources}
        for source in scan.sources:
            lines += [f"  {line}" for line in _suggestion_lines(source)]

    status = _sync_sources(args, scan.sources, verify=args.verify, report=report)
    for name, reason in scan.skipped.items():
        print(f"{args.prog}: skipped {name}: {reason}", file=sys.stderr)
    return PARTIAL_IMPORT if status == 0 and scan.skipped else status


def _suggestion(source: ModelSource) -> dict[str, object]:
    """Settings for the model's stack entry from its Ollama PARAMETERs (ollama.py)."""
    return cast(dict[str, object], source.origin.get("suggestedSettings", {}))


def _suggestion_lines(source: ModelSource) -> list[str]:
    lines: list[str] = []
    suggestion = _suggestion(source)
    if suggestion:
        lines.append(
            f"{source.name}: settings from its Ollama parameters: {json.dumps(suggestion)}"
        )
    dropped = cast(list[str], source.origin.get("droppedParameters", []))
    if dropped:
        lines.append(f"{source.name}: dropped (no llama-server setting): {', '.join(dropped)}")
    if source.origin.get("ollamaTemplate"):
        lines.append(
            f"{source.name}: Ollama's own chat template (a Go template) is not used: "
            "llama-server formats chats with the GGUF's template, or chatml if it has none "
            "(inspect says; set chatTemplate)"
        )
    return lines


# botocore's attempts per request when the fetch itself is retried (--retry-seconds): an
# unreachable store is then reported (and counted) within a second, not after ~25 s of retries.
RETRIED_FETCH_REQUEST_ATTEMPTS = 3


def _cmd_fetch(args: argparse.Namespace) -> int:
    hex_digest = parse_digest(args.digest)
    shards = None if args.shard is None else [parse_digest(d) for d in args.shard]
    parts = [parse_digest(digest) for digest in args.file or ()]  # all checked first
    retried = args.retry_seconds is not None
    store = RemoteStore.open(
        args.store,
        args.endpoint_url,
        checksum_headers=args.checksum_headers,
        max_attempts=RETRIED_FETCH_REQUEST_ATTEMPTS if retried else None,
    )
    cache_dir = Path(args.cache_dir)

    def report(err: Exception, delay: float) -> None:
        print(
            f"{args.prog}: error: {describe_failure(err)}; next attempt in {delay:g} s",
            file=sys.stderr,
        )

    metrics = FetchMetrics()
    mismatched = MismatchedObjects()
    with progress_for(args.json) as progress, serving_metrics(metrics, args.metrics_port):

        def attempt() -> tuple[FetchResult, list[FetchResult]]:
            result = fetch_model_files(
                store, hex_digest, cache_dir, shards, progress, mismatched=mismatched
            )
            files = [
                fetch_model(store, part, cache_dir, progress, mismatched=mismatched)
                for part in parts
            ]
            return result, files

        result, files = fetch_until_done(attempt, metrics, args.retry_seconds, report)
    document = result.to_json()
    if files:
        document["files"] = [file.to_json() for file in files]
    lines = [f"{fetched.status}: {fetched.path}" for fetched in (result, *files)]
    _emit(args, document, lines)
    return 0


def _local_verification(args: argparse.Namespace) -> VerifyResult:
    path = Path(args.file)
    if args.digest:
        return verify_local(path, args.digest)
    if not args.store:
        raise ModelSyncError("verify --file needs --digest or a STORE whose manifest names it")
    name = args.names[0] if args.names else path.stem
    entry = _store(args).read_manifest().models.get(name)
    if entry is None:
        raise ModelSyncError(f"{name!r} is not in the manifest of {args.store}")
    return verify_local(path, entry.digest)


def _cmd_verify(args: argparse.Namespace) -> int:
    if args.file:
        results = [_local_verification(args)]
    elif not args.store:
        raise ModelSyncError("verify needs a STORE (s3://BUCKET/PREFIX) or --file PATH")
    else:
        with progress_for(args.json) as progress:
            results = verify_remote(_store(args), args.names or None, progress)
    lines = [f"{'ok' if r.ok else 'FAILED':6} {r.name}  {r.detail}" for r in results]
    _emit(args, {"results": [r.to_json() for r in results]}, lines)
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"{args.prog}: error: verification failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _part_size(text: str) -> int:
    value = int(text)
    if value * MIB < MIN_PART_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_PART_SIZE // MIB} (MiB)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a TCP port, 0-65535 (0: any free one)")
    return value


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, Ceph RGW, ...)")
    parser.add_argument("--concurrency", type=_positive, default=10, help="parallel S3 requests")
    parser.add_argument(
        "--no-checksum-headers",
        dest="checksum_headers",
        action="store_false",
        help="send no x-amz-checksum-* headers (stores that refuse them, e.g. Backblaze B2); "
        "the SHA-256 content address still proves every object",
    )


def _add_sync_options(parser: argparse.ArgumentParser) -> None:
    _add_store_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="plan only; change nothing")
    parser.add_argument(
        "--part-size", type=_part_size, default=DEFAULT_PART_SIZE // MIB, help="multipart size, MiB"
    )
    parser.add_argument("--cache-dir", help="hash cache folder (default ~/.cache/llamafleet/…)")


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes as one stderr line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "modelsync") -> argparse.ArgumentParser:
    """The parser of every modelsync command; `prog` names the program in usage and errors.

    Each subcommand sets `handler`, a function of the parsed namespace returning the exit status.
    """
    parser = _OneLineErrorParser(
        prog=prog, description="Content-addressed GGUF model distribution over S3."
    )
    parser.set_defaults(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _OneLineErrorParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")

    inspect = commands.add_parser("inspect", parents=[common], help="read a GGUF header")
    inspect.add_argument("file", help="GGUF file")
    inspect.add_argument("--digest", action="store_true", help="also hash the file (reads it)")
    inspect.set_defaults(handler=_cmd_inspect)

    sync = commands.add_parser("sync", parents=[common], help="upload GGUF files to a store")
    sync.add_argument("source", help="a GGUF file or a folder of them")
    sync.add_argument("store", help="s3://BUCKET/PREFIX")
    sync.add_argument(
        "--adapter",
        action="append",
        metavar="PATH",
        help="a LoRA adapter GGUF of the model (llama-server --lora), stored in its entry; "
        "repeat for several, in order",
    )
    sync.add_argument(
        "--projector",
        metavar="PATH",
        help="the model's multimodal projector GGUF (llama-server --mmproj), stored in its entry",
    )
    _add_sync_options(sync)
    sync.set_defaults(handler=_cmd_sync)

    ollama = commands.add_parser(
        "import-ollama", parents=[common], help="upload models from an Ollama store"
    )
    ollama.add_argument("store", help="s3://BUCKET/PREFIX")
    ollama.add_argument("models", nargs="*", help="model[:tag] (default: every model)")
    ollama.add_argument("--models-dir", help="Ollama store (default $OLLAMA_MODELS or ~/.ollama)")
    ollama.add_argument("--verify", action="store_true", help="re-hash blobs, not trust names")
    _add_sync_options(ollama)
    ollama.set_defaults(handler=_cmd_import_ollama)

    fetch = commands.add_parser(
        "fetch", parents=[common], help="download a model (every shard of a split one) by digest"
    )
    fetch.add_argument("--store", required=True, help="s3://BUCKET/PREFIX")
    fetch.add_argument("--digest", required=True, help="sha256:<hex>")
    fetch.add_argument(
        "--shard",
        action="append",
        metavar="DIGEST",
        help="a split model's shards 2..N, in order (default: as the manifest names them)",
    )
    fetch.add_argument(
        "--file",
        action="append",
        metavar="DIGEST",
        help="another file of the model (a LoRA adapter, a projector) to fetch, verified, "
        "beside it as sha256/<hex>.gguf; repeatable",
    )
    fetch.add_argument("--cache-dir", required=True, help="node-local model cache folder")
    fetch.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="while fetching, serve Prometheus metrics on 0.0.0.0:PORT/metrics: failed "
        "attempts by reason (llamafleet_model_fetch_failures_total) and "
        "llamafleet_model_fetch_in_progress",
    )
    fetch.add_argument(
        "--retry-seconds",
        type=_positive,
        metavar="S",
        help="retry a failed fetch instead of exiting, waiting 5 s, then twice as long each "
        "time, at most S seconds (each failure is one stderr line naming its reason)",
    )
    _add_store_options(fetch)
    fetch.set_defaults(handler=_cmd_fetch)

    verify = commands.add_parser("verify", parents=[common], help="re-hash against the manifest")
    verify.add_argument("store", nargs="?", help="s3://BUCKET/PREFIX")
    verify.add_argument("names", nargs="*", help="model names (default: all)")
    verify.add_argument("--file", help="verify this local file instead of remote objects")
    verify.add_argument("--digest", help="expected digest for --file")
    _add_store_options(verify)
    verify.set_defaults(handler=_cmd_verify)
    return parser


def main(argv: list[str] | None = None, prog: str = "modelsync") -> int:
    """Run the command in `argv` (default: sys.argv[1:]) and return its exit status.

    0 on success; 1 on an error, printed as one `<prog>: error: ...` line on stderr, or when a
    verification fails; 3 (PARTIAL_IMPORT) when import-ollama imported some models and skipped
    others (one `<prog>: skipped NAME: reason` line each); 130 on Ctrl-C; 143 on SIGTERM (handled
    even as a container's PID 1). Usage errors and --help end in argparse's SystemExit (status 2
    and 0).

    `fetch` names the reason of its failure (`failures.py`) on its error line,
    `<prog>: error: <reason>: ...`, and exits with a status of its own per reason:
    4 store_unreachable (connection refused or reset, DNS, timeouts, a proxy's 502/503/504),
    5 digest_mismatch, 6 not_found (no such object or bucket), 7 access_denied (403, bad or
    missing credentials), 1 other. With --retry-seconds it exits only once the fetch succeeds
    (or on Ctrl-C): each failure is an error line, then a wait.
    """
    args = build_parser(prog).parse_args(argv)
    handler: Handler = args.handler
    # In a pod, modelsync is PID 1 of its container, and the kernel drops a signal that PID 1
    # has no handler for: without this, a fetch retrying for ever would ignore SIGTERM and hold
    # its pod (and the team's quota) for the whole grace period.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return handler(args)
    except REPORTED as err:
        if args.command == "fetch":
            print(f"{prog}: error: {describe_failure(err)}", file=sys.stderr)
            return FETCH_EXIT_STATUS[failure_reason(err)]
        message = one_line(err)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


# SIGTERM's exit status by the shell's convention, 128 + 15.
TERMINATED = 143


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    """Stop as SIGTERM asks: unwind (a partial download is removed by its own cleanup) and exit
    TERMINATED.

    Raises:
        SystemExit: always, with TERMINATED.
    """
    print("modelsync: terminated", file=sys.stderr)
    raise SystemExit(TERMINATED)


if __name__ == "__main__":
    sys.exit(main())
