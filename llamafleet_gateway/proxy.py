"""The gateway's entrypoint: LiteLLM's proxy (its own command line) behind an allowlist of routes.

`python -m llamafleet_gateway.proxy --config … --host … --port …` takes LiteLLM's `litellm`
arguments. LiteLLM serves more than the OpenAI routes, and some without any key: its public
model hub (which would list every team's model groups), `/routes`, `/openapi.json`, `/`, its UI
settings. The allowlist answers everything but the OpenAI routes with an OpenAI-style 404 before
LiteLLM sees the request, and answers the two health routes the kubelet probes itself, without
LiteLLM's details (its version, its callbacks). It is a plain ASGI wrapper, so a stream passes
through unbuffered. Where other clusters' gateways have certificates from a private CA, it adds
those CAs to the public ones LiteLLM verifies backends with (`environment.PEER_CA`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from llamafleet_gateway import environment
from llamafleet_gateway.openai_routes import OPENAI_ROUTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LIVENESS = "/health/liveliness"
READINESS = "/health/readiness"


class OnlyOpenAIRoutes:
    """ASGI middleware: HTTP requests to an OpenAI route (`OPENAI_ROUTES`) reach `app`; the
    health routes are answered here (liveness: 200 while the event loop runs; readiness: 200
    once `ready()` holds, else 503); any other path gets 404, whatever its key."""

    def __init__(self, app: App, ready: Callable[[], bool]) -> None:
        self.app = app
        self.ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: HTTP as the class says, LiteLLM's lifespan events passed
        through, a websocket closed (policy violation) before LiteLLM sees it."""
        if scope["type"] == "lifespan":  # LiteLLM's startup and shutdown
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: no OpenAI route the gateway serves is one
            await send({"type": "websocket.close", "code": 1008})
            return
        path = str(scope.get("path", "")).rstrip("/")
        if path in OPENAI_ROUTES:
            await self.app(scope, receive, send)
        elif path == LIVENESS:
            await _answer(send, 200, {"status": "alive"})
        elif path == READINESS:
            ready = self.ready()
            await _answer(send, 200 if ready else 503, {"status": "ready" if ready else "starting"})
        else:
            await _answer(
                send,
                404,
                {"error": {"message": "not found", "type": "not_found_error", "code": "404"}},
            )


async def _answer(send: Send, status: int, body: object) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _router_loaded() -> bool:
    from litellm.proxy import proxy_server  # noqa: PLC0415

    return getattr(proxy_server, "llm_router", None) is not None


def trust_bundle(public: Path, private: Path, bundle: Path) -> Path:
    """Write `bundle`: the public CAs (`public`, PEM) and then the peers' private ones; return
    it. LiteLLM verifies a backend's certificate against SSL_CERT_FILE when it is set
    (litellm.llms.custom_httpx.http_handler.get_ssl_verify), in place of the public CAs, so
    both must be in it."""
    bundle.write_text(public.read_text().rstrip("\n") + "\n" + private.read_text())
    return bundle


def _trust_peer_cas() -> None:
    private = os.environ.get(environment.PEER_CA)
    if not private:
        return
    import certifi  # noqa: PLC0415 (the gateway environment's, as LiteLLM's clients use it)

    public = Path(os.environ.get("SSL_CERT_FILE") or certifi.where())
    bundle = Path(tempfile.mkdtemp(prefix="llamafleet-ca-")) / "ca-bundle.pem"
    os.environ["SSL_CERT_FILE"] = str(trust_bundle(public, Path(private), bundle))


def main() -> None:
    """Trust the peers' private CAs, wrap LiteLLM's app, then run LiteLLM's own command line (it
    serves the app by its import path, `litellm.proxy.proxy_server:app`, so it finds the
    wrapped one)."""
    _trust_peer_cas()
    from litellm.proxy import proxy_server  # noqa: PLC0415
    from litellm.proxy.proxy_cli import run_server  # noqa: PLC0415

    proxy_server.app.add_middleware(OnlyOpenAIRoutes, ready=_router_loaded)
    run_server()


if __name__ == "__main__":
    main()
