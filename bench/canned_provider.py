"""A canned OpenAI-compatible provider for the non-streamed throughput benchmarks.

    .venv/bin/python -m bench.canned_provider --key bench-key     # prints "OpenAI http://127.0.0.1:PORT/v1"

It answers every `POST .../chat/completions` that carries `Authorization: Bearer <key>`
with the same `chat.completion` body (usage included), on HTTP/1.1 keep-alive, from an
asyncio protocol on uvloop with httptools parsing requests: about a tenth of the CPU per
request of `tests.fakes.llm` (an aiohttp app with fault injection and call recording), which
matters because the fake shares the gateway's two cores and a real provider would not.
A wrong key gets a 401 and any other path a 404, both in OpenAI's error format, so a
misconfigured benchmark fails loudly. Not for tests: `tests.fakes.llm` is the wire-level double.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys

import httptools

COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris, for the Eiffel Tower."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 8, "total_tokens": 27},
}


def response(status: str, body: dict) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
            f"connection: keep-alive\r\n\r\n").encode() + data


def error(status: str, message: str) -> bytes:
    return response(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


class CannedProtocol(asyncio.Protocol):
    """One connection: parse requests with httptools, answer each from the canned bytes."""

    def __init__(self, ok: bytes, auth: bytes) -> None:
        self.ok = ok
        self.auth = auth
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorized = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(error("400 Bad Request", "malformed HTTP request"))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.authorized = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization" and value == self.auth:
            self.authorized = True

    def on_message_complete(self) -> None:
        if not self.url.split(b"?", 1)[0].endswith(b"/chat/completions"):
            self.transport.write(error("404 Not Found", "no such path"))
        elif not self.authorized:
            self.transport.write(error("401 Unauthorized", "Incorrect API key provided"))
        else:
            self.transport.write(self.ok)


async def serve(key: str, port: int = 0) -> tuple[asyncio.base_events.Server, int]:
    ok = response("200 OK", COMPLETION)
    auth = f"Bearer {key}".encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CannedProtocol(ok, auth), "127.0.0.1", port,
                                      family=socket.AF_INET, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="the API key callers must send as a bearer token")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--seconds", type=float, default=900, help="stop after this long")
    args = parser.parse_args(argv)

    async def run() -> None:
        server, port = await serve(args.key, args.port)
        print(f"OpenAI http://127.0.0.1:{port}/v1", flush=True)
        async with server:
            await asyncio.sleep(args.seconds)

    import uvloop

    uvloop.run(run())


if __name__ == "__main__":
    sys.exit(main())
