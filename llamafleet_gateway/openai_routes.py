"""The OpenAI routes the gateway serves (with and without LiteLLM's /v1 prefix): the only paths
that reach LiteLLM (llamafleet_gateway.proxy) and that a team key may call (the plugin)."""

from __future__ import annotations

OPENAI_ROUTES = frozenset(
    f"{prefix}/{route}"
    for prefix in ("", "/v1")
    for route in ("chat/completions", "completions", "embeddings", "models")
)
