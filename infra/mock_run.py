"""Run the real program under Pulumi's mock monitor and collect what it declares.

`pulumi preview` needs an engine and credentials; this needs neither, so PR review, `render` and
the tests see exactly the resources the program registers, with the inputs it gives them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.rpc import is_rpc_secret
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await  # pyright: ignore[reportPrivateUsage]

PROJECT = "llamafleet"
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 (what redaction writes)


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

    @property
    def redacted_inputs(self) -> dict[str, Any]:
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
    if masked:
        return SECRET_PLACEHOLDER
    if isinstance(value, float) and value.is_integer():
        # The RPC layer turns every number into a float; Kubernetes integers must stay integers.
        return int(value)
    return value


class _Mocks(pulumi_mocks.Mocks):
    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            # A stand-in value so dependent outputs resolve; marked secret like the real one.
            state["result"] = pulumi.Output.secret(f"mock-{args.name}")
        return f"{args.name}-id", state

    def call(
        self, args: pulumi_mocks.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self) -> None:
        super().__init__(_Mocks())
        self.declared: list[Declared] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = self.resources[response.urn].state
            self.declared.append(
                Declared(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs={k: v for k, v in inputs.items() if k != "result"},
                    provider=request.provider,
                )
            )
        return response


def run_program(
    program: Callable[[], None], stack: str, config: Mapping[str, str], preview: bool = True
) -> list[Declared]:
    """Run `program` as stack `stack` with `config` (engine-style: key -> JSON string)."""
    return contextvars.copy_context().run(_run, program, stack, dict(config), preview)


def _run(
    program: Callable[[], None], stack: str, config: dict[str, str], preview: bool
) -> list[Declared]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        runtime_settings.ROOT.set(None)
        monitor = _RecordingMonitor()
        pulumi.runtime.set_mocks(monitor.mocks, PROJECT, stack, preview=preview, monitor=monitor)
        pulumi.runtime.set_all_config(config, [])
        _sync_await(run_pulumi_func(program))
        return monitor.declared
    finally:
        asyncio.set_event_loop(None)
        loop.close()
