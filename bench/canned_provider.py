"""A canned OpenAI-compatible provider for the benchmarks.

    .venv/bin/python -m bench.canned_provider --key bench-key     # prints "OpenAI http://127.0.0.1:PORT/v1"
    .venv/bin/python -m bench.canned_provider --key bench-key --chunks 200 --chunk-interval 0.005

It answers every `POST .../chat/completions` that carries `Authorization: Bearer <key>`
on HTTP/1.1 keep-alive, from an asyncio protocol on uvloop with httptools parsing requests:
with the same `chat.completion` body (usage included), or, when the request says
`"stream": true`, with a `text/event-stream` of `chat.completion.chunk` events as OpenAI sends
them (chunked transfer encoding): a role chunk and the first content chunk at once, the other
content chunks `--chunk-interval` seconds apart (each its own write), then the finish chunk,
the usage chunk when `stream_options.include_usage` asks for it, and `data: [DONE]`.

It costs a fraction of the CPU per request or per chunk of `tests.fakes.llm` (an aiohttp app
with fault injection and call recording), which matters because the provider shares the
gateway's two cores in the benchmarks and a real provider would not. A wrong key gets a 401
and any other path a 404, both in OpenAI's error format, so a misconfigured benchmark fails
loudly. Not for tests: `tests.fakes.llm` is the wire-level double.
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


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")


def _framed(data: bytes) -> bytes:
    """One piece of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class CannedStream:
    """The bytes of one canned stream of `chunks` content chunks, framed for chunked encoding."""

    def __init__(self, chunks: int) -> None:
        base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600, "model": "bench-model"}

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            return _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        pieces = [f"w{i}" + (" " if i < chunks - 1 else "") for i in range(chunks)]
        usage = {"prompt_tokens": 19, "completion_tokens": chunks, "total_tokens": 19 + chunks}
        self.first = STREAM_HEAD + _framed(chunk({"role": "assistant", "content": ""}) + chunk({"content": pieces[0]}))
        self.rest = [_framed(chunk({"content": p})) for p in pieces[1:]]
        end = chunk({}, "stop")
        done = b"data: [DONE]\n\n"
        self.tail = _framed(end + done) + b"0\r\n\r\n"
        self.tail_with_usage = _framed(end + _event({**base, "choices": [], "usage": usage}) + done) + b"0\r\n\r\n"


def error(status: str, message: str) -> bytes:
    return response(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})


class CannedProtocol(asyncio.Protocol):
    """One connection: parse requests with httptools, answer each from the canned bytes."""

    def __init__(self, ok: bytes, auth: bytes, stream: CannedStream | None = None, interval: float = 0.0) -> None:
        self.ok = ok
        self.auth = auth
        self.stream = stream
        self.interval = interval
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body = b""
        self.authorized = False
        self.timer: asyncio.TimerHandle | None = None

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
        self.body = b""
        self.authorized = False

    def on_body(self, body: bytes) -> None:
        self.body += body

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
        elif self.stream is not None and b'"stream"' in self.body and (usage := _stream_usage(self.body)) is not None:
            self._start_stream(usage)
        else:
            self.transport.write(self.ok)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    # streams
    def _start_stream(self, usage: bool) -> None:
        stream = self.stream
        tail = stream.tail_with_usage if usage else stream.tail
        self.transport.write(stream.first)
        if self.interval <= 0:
            for piece in stream.rest:
                self.transport.write(piece)
            self.transport.write(tail)
            return
        self._pace(0, tail)

    def _pace(self, i: int, tail: bytes) -> None:
        if i == len(self.stream.rest):
            self.timer = None
            self.transport.write(tail)
            return
        self.timer = asyncio.get_running_loop().call_later(self.interval, self._next, i, tail)

    def _next(self, i: int, tail: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(self.stream.rest[i])
        self._pace(i + 1, tail)


def _stream_usage(body: bytes) -> bool | None:
    """None unless the request asks for a stream; then whether it asks for the usage chunk."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict) or request.get("stream") is not True:
        return None
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


async def serve(key: str, port: int = 0, chunks: int = 0, interval: float = 0.0) -> tuple[asyncio.base_events.Server, int]:
    """Listen on 127.0.0.1:`port` (0: any); `chunks` > 0 also answers streamed requests."""
    ok = response("200 OK", COMPLETION)
    auth = f"Bearer {key}".encode()
    stream = CannedStream(chunks) if chunks > 0 else None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CannedProtocol(ok, auth, stream, interval), "127.0.0.1", port,
                                      family=socket.AF_INET, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="the API key callers must send as a bearer token")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--seconds", type=float, default=900, help="stop after this long")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--chunk-interval", type=float, default=0.0,
                        help="seconds between a stream's content chunks (0: back to back)")
    args = parser.parse_args(argv)

    async def run() -> None:
        server, port = await serve(args.key, args.port, args.chunks, args.chunk_interval)
        print(f"OpenAI http://127.0.0.1:{port}/v1", flush=True)
        async with server:
            await asyncio.sleep(args.seconds)

    import uvloop

    uvloop.run(run())


if __name__ == "__main__":
    sys.exit(main())
