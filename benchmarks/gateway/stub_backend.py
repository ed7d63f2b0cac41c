"""An OpenAI-style backend that answers at once (asyncio, HTTP/1.1 keep-alive): chat completions,
streamed (4 SSE chunks) or not, for any key. The benchmark's peer: what a gateway adds on top of
a backend that costs nothing.

    python stub_backend.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

CHUNK = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
ANSWER = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


def _events() -> bytes:
    parts = []
    for i, text in enumerate(["a", "b", "c", "d"]):
        delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if i == 3 else None}
        parts.append(b"data: " + json.dumps({**CHUNK, "choices": [choice]}).encode() + b"\n\n")
    return b"".join(parts) + b"data: [DONE]\n\n"


EVENTS = _events()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = json.loads(await reader.readexactly(length)) if length else {}
            if body.get("stream"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + f"{len(EVENTS):x}\r\n".encode()
                    + EVENTS
                    + b"\r\n0\r\n\r\n"
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
