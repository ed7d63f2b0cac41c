"""How long a stopping llama-server pod drains: one source, the model's max_tokens at its measured
tokens/s, bounded by the request timeout (llamafleet.components.inference_pod)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llamafleet.components.inference_pod import (
    DRAIN_QUIET_SECONDS,
    PROMPT_SECONDS,
    TERM_SECONDS,
    PodInputs,
    drain_command,
)
from llamafleet.components.model_store import ModelStoreConfig
from llamafleet.components.server_args import API_KEY_FILE, ServerOptions
from llamafleet.components.sizing import GgufFacts, ServingShape

FACTS = GgufFacts(253_113_024, 18, 1, 256, 256, 32768, 262_144)


def inputs(
    *, max_tokens: int | None = 1024, tps: float = 20, timeout: int = 300, parallel: int = 2
) -> PodInputs:
    shape = ServingShape(2048, parallel, 2, 128)
    server = ServerOptions("m", "sha256:" + "a" * 64, shape, "cpu", timeout, max_tokens=max_tokens)
    return PodInputs(
        server=server,
        facts=FACTS,
        tier_name="cpu",
        image="i@sha256:" + "0" * 64,
        fetcher_image="f@sha256:" + "1" * 64,
        store=ModelStoreConfig(bucket="models", region="eu-west-1"),
        api_key_secret="keys",
        service_account="m",
        deregistration_seconds=5,
        tokens_per_second=tps,
        queue_per_replica=2,
    )


def test_the_longest_request_is_its_prompt_and_max_tokens_at_the_measured_speed() -> None:
    assert inputs().longest_request_seconds == PROMPT_SECONDS + 1024 // 20 + 1  # ceil(51.2)


def test_the_request_timeout_bounds_the_longest_request() -> None:
    assert inputs(timeout=30).longest_request_seconds == 30
    assert inputs(max_tokens=None).longest_request_seconds == 300


@pytest.mark.parametrize(("parallel", "rounds"), [(1, 3), (2, 2), (4, 2)])
def test_the_drain_covers_the_slots_and_the_queue_behind_them(parallel: int, rounds: int) -> None:
    pod = inputs(parallel=parallel)
    assert pod.drain_max_seconds == rounds * pod.longest_request_seconds + DRAIN_QUIET_SECONDS


def test_the_grace_period_covers_settle_drain_and_exit() -> None:
    pod = inputs()
    assert pod.termination_grace_seconds == 5 + pod.drain_max_seconds + TERM_SECONDS


def test_a_faster_model_drains_sooner() -> None:
    assert inputs(tps=100).drain_max_seconds < inputs(tps=10).drain_max_seconds


def test_the_hook_reads_the_key_from_the_mounted_file_never_from_its_arguments() -> None:
    pod = inputs()
    command = drain_command(pod)
    assert command[:3] == ["llama-drain", "8080", API_KEY_FILE]
    assert command[3:] == ["5", str(DRAIN_QUIET_SECONDS), str(pod.drain_max_seconds)]
    assert replace(pod, deregistration_seconds=9).drain_max_seconds == pod.drain_max_seconds
