"""Run the real program under Pulumi's mock monitor and collect what it declares.

`pulumi preview` needs an engine and credentials; this needs neither, so PR review, `render` and
the tests see exactly the resources the program registers, with the inputs it gives them.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.rpc import is_rpc_secret
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

PROJECT = "llamafleet"
# The dynamic resource type of llamafleet.components.api_keys.ApiKey.
API_KEY_TYPE = "pulumi-python:dynamic/tenancy:ApiKey"
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 (what redaction writes)
UNKNOWN_PLACEHOLDER = "[computed]"  # an output known once the resource exists


@dataclass(frozen=True)
class Declared:
    """One resource as the program registered it. `inputs` keep Pulumi's secret wrappers."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    # "<provider urn>::<provider id>" for custom resources with an explicit provider, else "".
    provider: str = ""
    # The resource options the engine would act on, as registered: URNs this resource waits for
    # (`depends_on`, plus those its inputs carry), property paths `ignore_changes` names,
    # `protect`, `retain_on_delete`, `delete_before_replace`, property paths
    # `replace_on_changes` names, and the names of `aliases` (URN or name strings).
    depends_on: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    replace_on_changes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def redacted_inputs(self) -> dict[str, Any]:
        """`inputs` with secrets as "[secret]" and unknown outputs as "[computed]" (see redact)."""
        redacted = redact(self.inputs)
        assert isinstance(redacted, dict)
        return redacted


def redact(value: Any, masked: bool = False) -> Any:
    """Replace every secret value with a placeholder, keeping the shape around it (a Secret's
    `stringData` keeps its keys, so the object still passes the schema check)."""
    if is_rpc_secret(value):
        return redact(value["value"], masked=True)
    if isinstance(value, Mapping):
        return {str(k): redact(v, masked) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, masked) for v in value]
    if masked or isinstance(value, pulumi.output.Unknown):
        return SECRET_PLACEHOLDER if masked else UNKNOWN_PLACEHOLDER
    if isinstance(value, float) and value.is_integer():
        # The RPC layer turns every number into a float; Kubernetes integers must stay integers.
        return int(value)
    return value


MOCK_ACCOUNT = "123456789012"
# What a provider computes that a program reads back: extra state, from the mock's args.
Computed = Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]


def provider_computed(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    """Stand-ins for outputs the real providers compute, so dependent outputs resolve."""
    if args.typ == API_KEY_TYPE:
        # Marked secret like the real one.
        return {"value": pulumi.Output.secret(f"mock-{args.name}")}
    if args.typ == "docker-build:index:Image":
        # A stand-in content digest, stable per resource name.
        return {"digest": "sha256:" + hashlib.sha256(args.name.encode()).hexdigest()}
    if args.typ.startswith("aws:"):
        return _aws_computed(args)
    if args.typ.startswith("kubernetes:"):
        return _kubernetes_computed(args)
    return {}


def _aws_computed(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    if args.typ == "aws:ecr/repository:Repository":
        registry = f"{MOCK_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
        return {
            "arn": f"arn:aws:ecr:us-east-1:{MOCK_ACCOUNT}:repository/{args.inputs.get('name')}",
            "repositoryUrl": f"{registry}/{args.inputs.get('name')}",
        }
    if args.typ == "aws:s3/bucket:Bucket":
        return {"arn": f"arn:aws:s3:::{args.inputs.get('bucket', args.name)}"}
    service = args.typ.split(":")[1].split("/")[0]
    return {"arn": f"arn:aws:{service}:us-east-1:{MOCK_ACCOUNT}:{args.name}"}


def _kubernetes_computed(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    metadata = args.inputs.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    # The API server gives every object a uid (ownerReferences name their owner by it).
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{args.typ}/{args.name}"))
    return {"metadata": {**cast(dict[str, Any], metadata), "uid": uid}}


class _Mocks(pulumi_mocks.Mocks):
    def __init__(self, computed: Computed | None) -> None:
        self.computed = computed

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        state = {**args.inputs, **provider_computed(args)}
        if self.computed is not None:
            state.update(self.computed(args))
        return f"{args.name}-id", state

    def call(
        self, args: pulumi_mocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, computed: Computed | None, declared: list[Declared]) -> None:
        super().__init__(_Mocks(computed))
        self.declared = declared

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.declared.append(
                Declared(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    # What the program gave, not what the mock computed.
                    inputs=rpc.deserialize_properties(request.object),
                    provider=request.provider,
                    depends_on=tuple(request.dependencies),
                    ignore_changes=tuple(request.ignoreChanges),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    replace_on_changes=tuple(request.replaceOnChanges),
                    aliases=tuple(_alias_names(request)),
                )
            )
        return response


def _alias_names(request: Any) -> list[str]:
    """Each alias as its URN, or as `name=…,type=…,parent=…` where it gives only parts."""
    names: list[str] = []
    for spec in request.aliases:
        if spec.urn:
            names.append(spec.urn)
            continue
        parts = [f"name={spec.spec.name}"] if spec.spec.name else []
        if spec.spec.type:
            parts.append(f"type={spec.spec.type}")
        if spec.spec.parentUrn:
            parts.append(f"parent={spec.spec.parentUrn}")
        if spec.spec.noParent:
            parts.append("parent=<none>")
        names.append(",".join(parts))
    return names


def run_program(
    program: Callable[[], None],
    stack: str,
    config: Mapping[str, str],
    *,
    preview: bool = True,
    computed: Computed | None = None,
    declared: list[Declared] | None = None,
) -> list[Declared]:
    """Run `program` as stack `stack` with `config` (engine-style: key -> JSON string) and
    return what it registered, in order. Raises what the program raises.

    `computed` adds provider-computed state to the resources a test cares about; `declared`, if
    given, receives each resource as it registers (what a failed run got to register)."""
    record = [] if declared is None else declared
    return contextvars.copy_context().run(
        _run, program, stack, dict(config), _RunOptions(preview, computed, record)
    )


@dataclass(frozen=True)
class _RunOptions:
    preview: bool
    computed: Computed | None
    declared: list[Declared]


def _run(
    program: Callable[[], None], stack: str, config: dict[str, str], options: _RunOptions
) -> list[Declared]:
    previous = _current_loop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        runtime_settings.ROOT.set(None)
        # Outputs another mocked program left (e.g. a test's own `set_mocks`) belong to another
        # loop; this run would wait on them forever.
        runtime_settings.SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue]
        monitor = _RecordingMonitor(options.computed, options.declared)
        pulumi.runtime.set_mocks(
            monitor.mocks, PROJECT, stack, preview=options.preview, monitor=monitor
        )
        pulumi.runtime.set_all_config(config, [])
        _sync_await(run_pulumi_func(program))
        return monitor.declared
    finally:
        # A failed program leaves applies pending (what waited on the failed output): cancel
        # them, as asyncio.run does, so none outlives its loop.
        _cancel_pending(loop)
        # The SDK keeps failed outputs in a process-wide set for the engine to report at exit;
        # under the mocks the next run would wait on them, on this closed loop.
        runtime_settings.SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue]
        # Give the caller its loop back: other code in the process may rely on it.
        asyncio.set_event_loop(previous)
        loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _current_loop() -> asyncio.AbstractEventLoop | None:
    with warnings.catch_warnings():
        # Asking when none is set warns on newer Pythons; None is the answer we want then.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return asyncio.get_event_loop()
        except RuntimeError:
            return None
