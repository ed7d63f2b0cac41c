"""A stand-in for llama-server in tests of `llamafleet serve`: answers /health with 200 on the
--host and --port it is given, until SIGTERM."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str]) -> None:
    host = argv[argv.index("--host") + 1]
    port = int(argv[argv.index("--port") + 1])
    HTTPServer((host, port), Health).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
