"""Serve the real Q4_K_M model with exactly the argv the program renders for the local stack."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from llama_server import LlamaServer, ServerFactory, flag_value, get

pytestmark = pytest.mark.image

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def served(make_server: ServerFactory) -> Iterator[LlamaServer]:
    server = make_server().start()
    server.wait_ready()
    yield server
    server.stop()


def client(server: LlamaServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0)


def help_flags(payload: Path) -> set[str]:
    done = subprocess.run(
        [str(payload / "llama-server"), "--help"], check=True, capture_output=True, text=True
    )
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w+-]*)", done.stdout + done.stderr))


def test_every_rendered_flag_exists_in_the_pinned_help(payload: Path, argv: list[str]) -> None:
    """An unknown flag is a CrashLoop in the cluster; catch it here."""
    rendered = {arg for arg in argv[1:] if re.fullmatch(r"--?[A-Za-z][\w+-]*", arg)}
    assert rendered, argv
    assert rendered <= help_flags(payload), sorted(rendered - help_flags(payload))


def test_help_parser_rejects_a_flag_the_build_lacks(payload: Path) -> None:
    assert "--no-mmap-please" not in help_flags(payload)
    assert "--load-mode" in help_flags(payload)


def test_health_is_503_while_loading_then_200(served: LlamaServer) -> None:
    assert served.health_codes == [503, 200], served.log_text()


def test_completion_through_the_openai_client(served: LlamaServer, api_key: str) -> None:
    alias = flag_value(served.argv, "--alias", "-a")
    assert alias is not None
    answer = client(served, api_key).completions.create(
        model=alias, prompt=PROMPT, max_tokens=8, temperature=0
    )
    assert answer.choices[0].text.strip()
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_completion_with_a_wrong_key_is_refused(served: LlamaServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(served, "sk-wrong").completions.create(model="any", prompt=PROMPT, max_tokens=1)


def test_metrics_with_the_key_expose_the_queue(served: LlamaServer, api_key: str) -> None:
    status, body = get(served.port, "/metrics", {"Authorization": f"Bearer {api_key}"})
    assert status == 200
    assert "llamacpp:requests_deferred" in body.decode()


def test_metrics_without_the_key_are_401(served: LlamaServer) -> None:
    status, _ = get(served.port, "/metrics")
    assert status == 401


def test_sigterm_stops_the_server_cleanly(make_server: ServerFactory) -> None:
    server = make_server().start()
    server.wait_ready()
    assert server.stop() == 0, server.log_text()
