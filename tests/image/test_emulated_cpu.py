"""The same binary on emulated old CPUs: the right variant, no SIGILL (qemu-user, TCG)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator

import openai
import pytest
from llama_server import LlamaServer, ServerFactory, flag_value, loaded_variant

pytestmark = pytest.mark.image


def qemu() -> str:
    path = shutil.which("qemu-x86_64")
    if path is None:
        pytest.skip("qemu-x86_64 not installed: apt-get install qemu-user")
    return path


def emulated(make_server: ServerFactory, cpu: str) -> LlamaServer:
    # The full payload: the emulated CPU, not this host, decides which variants can run.
    server = make_server(prefix=[qemu(), "-cpu", cpu], extra=["-lv", "4"]).start()
    server.wait_ready(deadline_s=900)
    return server


@pytest.fixture(scope="module")
def ivybridge(make_server: ServerFactory) -> Iterator[LlamaServer]:
    server = emulated(make_server, "IvyBridge")
    yield server
    server.stop()


def test_ivybridge_loads_the_ivybridge_variant(ivybridge: LlamaServer) -> None:
    assert loaded_variant(ivybridge.log_text()) == "ivybridge"


def test_ivybridge_answers_without_sigill(ivybridge: LlamaServer, api_key: str) -> None:
    alias = flag_value(ivybridge.argv, "--alias", "-a")
    assert alias is not None
    api = openai.OpenAI(
        base_url=f"http://127.0.0.1:{ivybridge.port}/v1",
        api_key=api_key,
        max_retries=0,
        timeout=600,
    )
    answer = api.completions.create(model=alias, prompt="Paris is", max_tokens=4, temperature=0)
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert ivybridge.process is not None and ivybridge.process.poll() is None
    assert ivybridge.stop() != -signal.SIGILL, ivybridge.log_text()


@pytest.mark.parametrize(
    ("cpu", "variant"),
    [
        ("Nehalem", "sse42"),  # pre-AVX: falls back to SSE 4.2
        ("Haswell", "haswell"),  # control: the emulator does offer AVX2 when the model has it
    ],
)
def test_other_cpu_models_load_their_variant(
    make_server: ServerFactory, cpu: str, variant: str
) -> None:
    server = emulated(make_server, cpu)
    try:
        assert loaded_variant(server.log_text()) == variant
    finally:
        server.stop()
