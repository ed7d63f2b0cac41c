"""A real HTTP server on loopback with the few GitHub REST endpoints llamafleet.delivery calls:
an issue's comments (list, paged with `Link` headers; create; edit), a repository's issues
(list, paged; create), a pull request's head and a branch. State is kept in memory; failures
can be injected."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_test-token-0123456789"
BOT = "github-actions[bot]"
REPO = "acme/llamafleet"


@dataclass
class State:
    """What the fake holds and what it saw."""

    page_size: int = 2
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)
    # Pull request number -> its head: (repository owner/name, commit).
    pulls: dict[int, tuple[str, str]] = field(default_factory=dict)
    # Statuses to answer with, one per request, before answering normally.
    fail_with: list[int] = field(default_factory=list)
    # Overrides the base of the `Link` URLs (to test a foreign origin).
    link_base: str | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_comment(self, issue: int, body: str, login: str = BOT) -> dict[str, Any]:
        comment = {
            "id": self.new_id(),
            "body": body,
            "user": {"login": login},
            "html_url": f"https://github.test/{REPO}/pull/{issue}#c{self.next_id}",
        }
        self.comments.setdefault(issue, []).append(comment)
        return comment

    def add_issue(self, title: str, body: str, login: str = BOT, *, pr: bool = False) -> int:
        number = len(self.issues) + 1
        issue: dict[str, Any] = {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "user": {"login": login},
            "html_url": f"https://github.test/{REPO}/issues/{number}",
        }
        if pr:
            issue["pull_request"] = {"url": "..."}
        self.issues.append(issue)
        return number


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _page(self, items: list[dict[str, Any]], path: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * state.page_size
        chunk = items[start : start + state.page_size]
        headers = {}
        if start + state.page_size < len(items):
            base = state.link_base or f"http://127.0.0.1:{self.server.server_port}"
            headers["Link"] = (
                f'<{base}{path}?per_page=100&page={page + 1}>; rel="next", '
                f'<{base}{path}?per_page=100&page=1>; rel="first"'
            )
        self._send(200, chunk, headers)

    def _handle(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        state.requests.append((method, parts.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Bad credentials", "status": "401"})
            return
        if state.fail_with:
            status = state.fail_with.pop(0)
            self._send(status, {"message": f"injected {status}"})
            return
        prefix = f"/repos/{REPO}"
        if not parts.path.startswith(prefix):
            self._send(404, {"message": "Not Found"})
            return
        self._route(method, parts.path.removeprefix(prefix), parts.path, parse_qs(parts.query))

    def _route(self, method: str, path: str, full: str, query: dict[str, list[str]]) -> None:
        state = self.server.state
        if m := re.fullmatch(r"/issues/(\d+)/comments", path):
            issue = int(m[1])
            if method == "GET":
                self._page(state.comments.get(issue, []), full, query)
            else:
                self._send(201, state.add_comment(issue, self._body()["body"]))
        elif (m := re.fullmatch(r"/issues/comments/(\d+)", path)) and method == "PATCH":
            found = [c for cs in state.comments.values() for c in cs if c["id"] == int(m[1])]
            if not found:
                self._send(404, {"message": "Not Found"})
                return
            found[0]["body"] = self._body()["body"]
            self._send(200, found[0])
        elif path == "/issues" and method == "GET":
            wanted = query.get("state", ["open"])[0]
            self._page([i for i in state.issues if i["state"] == wanted], full, query)
        elif path == "/issues" and method == "POST":
            body = self._body()
            number = state.add_issue(body["title"], body["body"])
            self._send(201, state.issues[number - 1])
        elif (m := re.fullmatch(r"/pulls/(\d+)", path)) and int(m[1]) in state.pulls:
            repo, sha = state.pulls[int(m[1])]
            head = {"sha": sha, "repo": {"full_name": repo} if repo else None}
            self._send(200, {"number": int(m[1]), "head": head})
        elif (m := re.fullmatch(r"/branches/([^/]+)", path)) and m[1] in state.branches:
            self._send(200, {"name": m[1], "commit": {"sha": state.branches[m[1]]}})
        else:
            self._send(404, {"message": "Not Found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class _Server(ThreadingHTTPServer):
    state: State


@contextmanager
def fake_github() -> Iterator[tuple[str, State]]:
    """A fake GitHub API on 127.0.0.1; yields its base URL and its state."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = State()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.state
    finally:
        server.shutdown()
        server.server_close()
