"""EventStreamResponse over the ASGI interface: framing, disconnects, cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.api.responses import EventStreamResponse
from shared.routing.streaming import StreamInterrupted


class Events:
    """A stream of numbered one-chunk batches, longer than any test reads, that says when it
    was closed."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent = 0
        self.fail_after = fail_after
        self.closed = asyncio.Event()

    async def next_batch(self):
        if self.sent == self.fail_after:
            raise StreamInterrupted("the provider stream broke after the response started: test")
        if self.sent >= 5_000:
            return None
        await asyncio.sleep(0.001)
        self.sent += 1
        return [{"n": self.sent}]

    async def aclose(self) -> None:
        self.closed.set()


async def never():
    await asyncio.Event().wait()


async def test_a_disconnect_closes_the_stream_and_ends_the_response_quietly():
    events = Events()
    gone = asyncio.Event()
    messages: list[dict] = []

    async def receive():
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)
        if len(messages) == 4:
            gone.set()

    await asyncio.wait_for(EventStreamResponse(events, {"X-Test": "1"})({"type": "http"}, receive, send), 5)
    assert events.closed.is_set()
    assert messages[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in messages[0]["headers"]
    assert (b"x-test", b"1") in messages[0]["headers"]
    bodies = [m["body"] for m in messages[1:]]
    assert [json.loads(b.removeprefix(b"data: ")) for b in bodies[:3]] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert all(b.endswith(b"\n\n") for b in bodies[:3])


async def test_a_broken_stream_ends_with_an_error_event_then_done_from_the_serving_task():
    events = Events(fail_after=2)
    messages: list[dict] = []
    writers: list[asyncio.Task | None] = []

    async def send(message):
        messages.append(message)
        writers.append(asyncio.current_task())

    serving = asyncio.create_task(EventStreamResponse(events)({"type": "http"}, never, send))
    await asyncio.wait_for(serving, 5)
    assert all(w is serving for w in writers)
    assert messages[-1]["more_body"] is False
    error, done = messages[-1]["body"].split(b"\n\n")[:2]
    assert json.loads(error.removeprefix(b"data: "))["error"]["code"] == "stream_interrupted"
    assert done == b"data: [DONE]"
    assert len(messages) == 1 + 2 + 1 and events.closed.is_set()


async def test_a_cancellation_from_elsewhere_is_not_swallowed():
    events = Events()

    async def send(message):
        pass

    serving = asyncio.create_task(EventStreamResponse(events)({"type": "http"}, never, send))
    for _ in range(1_000):
        if events.sent >= 3:
            break
        await asyncio.sleep(0.001)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert events.closed.is_set()


# -- through the gateway ---------------------------------------------------------------------------


def one_write_stream(pieces: list[str]) -> bytes:
    """A whole OpenAI stream, response head included, as a provider that answers at once sends it."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body)) + body


async def test_a_provider_answer_sent_at_once_starts_reaching_the_caller_before_it_is_all_relayed():
    from shared.providers.transport import FIRST_READ_BYTES
    from tests.fakes.llm import GarbageServer
    from tests.gateway_helpers import function_app_asgi, installed, make_gateway

    pieces = [f"w{i} " for i in range(200)]
    answer = one_write_stream(pieces)
    async with GarbageServer(answer) as provider:
        gw = make_gateway({"providers": {"p": {"kind": "openai", "endpoint": provider.url + "/v1", "model": "m",
                                                "api_key_secret": "p-key"}},
                           "routes": {"default": {"candidates": ["p"]}}}, {"P_KEY": "k"})
        await gw.start()
        body = json.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
        requests = [{"type": "http.request", "body": body, "more_body": False}]
        bodies: list[bytes] = []
        loop_ran: list[bool] = []
        ran = asyncio.Event()
        finished = asyncio.Event()

        async def receive():
            if requests:
                return requests.pop()
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] != "http.response.body":
                return
            if len(bodies) == 1:
                loop_ran.append(ran.is_set())
            bodies.append(message["body"])
            if len(bodies) == 1:
                asyncio.get_running_loop().call_soon(ran.set)  # runs at the loop's next turn

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/api/v1/chat/completions",
                 "raw_path": b"/api/v1/chat/completions", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"gateway.test"), (b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        try:
            with installed(gw):
                await asyncio.wait_for(function_app_asgi()(scope, receive, send), 10)
        finally:
            finished.set()
            await gw.close()

    events = [json.loads(e.removeprefix(b"data: ")) for b in bodies for e in b.split(b"\n\n")
              if e and e != b"data: [DONE]"]
    first = [json.loads(e.removeprefix(b"data: ")) for e in bodies[0].split(b"\n\n") if e]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"]) == "".join(pieces)
    assert first[1]["choices"][0]["delta"]["content"] == "w0 "
    sent_per_event = len(answer) / (len(pieces) + 3)
    assert len(first) <= FIRST_READ_BYTES / sent_per_event + 1 < len(events), \
        "the first write carries the first events, not the whole answer"
    assert loop_ran == [True], "the event loop must turn (and send the first token) before the rest is relayed"
