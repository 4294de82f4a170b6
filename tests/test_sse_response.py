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
