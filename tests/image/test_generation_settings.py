"""Each templating and sampling setting the stack accepts, checked for its effect on the pinned
llama-server serving the real model: flags as `server_args` renders them, appended to the local
stack's rendered argv (where a flag repeats, the pinned build keeps the last value)."""

from __future__ import annotations

import http.client
import json
import re
from typing import Any

import pytest
from llama_server import LlamaServer, ServerFactory

from llamafleet.components.server_args import (
    SamplingDefaults,
    chat_template_args,
    sampling_args,
)

pytestmark = pytest.mark.image

HELLO = [{"role": "user", "content": "Hello"}]
PROMPT = "The capital of France is"
# What the pinned build's built-in templates make of one user "Hello" (src/llama-chat.cpp).
EXPECTED_PROMPTS = {
    "gemma": "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "chatml": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
}


def post(server: LlamaServer, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200, (response.status, payload, server.log_text()[-2000:])
        return json.loads(payload)
    finally:
        conn.close()


def props(server: LlamaServer, key: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/props", headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200, payload
        return json.loads(payload)
    finally:
        conn.close()


def completion(server: LlamaServer, key: str, **request: Any) -> str:
    """/completion with the server's default sampling unless `request` overrides it."""
    answer = post(server, key, "/completion", {"prompt": PROMPT, "n_predict": 24, **request})
    return str(answer["content"])


@pytest.mark.parametrize("name", sorted(EXPECTED_PROMPTS))
def test_a_builtin_name_formats_chats_with_that_template(
    make_server: ServerFactory, api_key: str, name: str
) -> None:
    with make_server(extra=chat_template_args(name)) as server:
        server.wait_ready()
        prompt = post(server, api_key, "/apply-template", {"messages": HELLO})["prompt"]
    assert prompt == EXPECTED_PROMPTS[name]


def test_the_rendered_local_argv_formats_chats_with_gemma(
    make_server: ServerFactory, api_key: str
) -> None:
    """The local stack sets `chatTemplate: gemma`: the test model's GGUF carries no template,
    and without one llama-server would format every chat as chatml."""
    with make_server() as server:
        server.wait_ready()
        prompt = post(server, api_key, "/apply-template", {"messages": HELLO})["prompt"]
    assert prompt == EXPECTED_PROMPTS["gemma"]


SAMPLING = SamplingDefaults(
    temperature=0.5, top_k=7, top_p=0.8, min_p=0.1, repeat_penalty=1.2, seed=1234
)


def test_every_sampling_setting_reaches_the_servers_defaults(
    make_server: ServerFactory, api_key: str
) -> None:
    with make_server(extra=sampling_args(SAMPLING)) as server:
        server.wait_ready()
        params = props(server, api_key)["default_generation_settings"]["params"]
    assert params["temperature"] == pytest.approx(0.5)
    assert params["top_k"] == 7
    assert params["top_p"] == pytest.approx(0.8)
    assert params["min_p"] == pytest.approx(0.1)
    assert params["repeat_penalty"] == pytest.approx(1.2)
    assert params["seed"] == 1234


def test_temperature_zero_gives_identical_completions(
    make_server: ServerFactory, api_key: str
) -> None:
    with make_server(extra=sampling_args(SamplingDefaults(temperature=0))) as server:
        server.wait_ready()
        first = completion(server, api_key, cache_prompt=False)
        second = completion(server, api_key, cache_prompt=False)
    assert first.strip() and first == second


def test_a_default_stop_string_truncates_and_a_request_can_replace_it(
    make_server: ServerFactory, api_key: str
) -> None:
    with make_server(extra=sampling_args(SamplingDefaults(temperature=0))) as server:
        server.wait_ready()
        free = completion(server, api_key)
    words = re.findall(r"\w{3,}", free)
    assert len(words) >= 2, free
    stop = words[1]
    cut = free[: free.index(stop)]
    with make_server(extra=sampling_args(SamplingDefaults(temperature=0, stop=[stop]))) as server:
        server.wait_ready()
        stopped = completion(server, api_key)
        replaced = completion(server, api_key, stop=["\x00never"])
    assert stopped == cut, (free, stop)
    assert replaced == free
