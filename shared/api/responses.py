"""Response building: OpenAI-style error bodies, route headers, SSE framing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping, Protocol

from starlette.responses import Response, StreamingResponse

from shared import jsonio
from shared.errors import GatewayError
from shared.routing.attempts import describe, header_safe

log = logging.getLogger("shared.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(body), status_code=status,
                    media_type="application/json", headers=headers)


def route_headers(route: dict[str, Any] | None) -> dict[str, str]:
    """The X-LLM-* headers for a route dict (see `shared.routing.router.route_info`)."""
    if not route:
        return {}
    h = {
        "X-LLM-Task-Type": route.get("task_type") or "",
        "X-LLM-Strategy": route.get("strategy") or "",
        "X-LLM-Attempts": ", ".join(describe(a) for a in route.get("attempts", [])),
    }
    if route.get("provider"):
        h["X-LLM-Provider"] = route["provider"]
    if route.get("model"):
        h["X-LLM-Model"] = route["model"]
    if route.get("route"):
        h["X-LLM-Route"] = route["route"]
    if route.get("request_id"):
        h["X-LLM-Request-Id"] = route["request_id"]
    if route.get("confidence") is not None:
        h["X-LLM-Task-Confidence"] = f"{route['confidence']:.3f}"
    if route.get("ignored_params"):
        h["X-LLM-Ignored-Params"] = ", ".join(route["ignored_params"])
    if route.get("cost_usd") is not None:
        h["X-LLM-Cost-USD"] = f"{route['cost_usd']:.8f}"
        h["X-LLM-Cost-Estimated"] = "true" if route.get("cost_estimated") else "false"
    return {k: header_safe(str(v)) for k, v in h.items()}


def error_response(err: GatewayError) -> Response:
    route = err.extra.get("route") if isinstance(err.extra, dict) else None
    headers = {**route_headers(route), **{k: header_safe(v) for k, v in err.headers.items()}}
    return json_response(err.body(), err.status, headers)


def internal_error(exc: BaseException) -> Response:
    log.exception("unexpected error while handling a request", exc_info=exc)
    return json_response(
        {"error": {"message": "internal error in the gateway (logged)", "type": "server_error",
                   "param": None, "code": "internal_error"}},
        500,
    )


def sse_event(obj: Any) -> bytes:
    return b"data: " + jsonio.dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class EventStream(Protocol):
    """What `EventStreamResponse` sends (`shared.routing.streaming.RoutedStream`)."""

    async def next_batch(self) -> list[Any] | None: ...

    async def aclose(self) -> None: ...


class EventStreamResponse(StreamingResponse):
    """Chunks as server-sent events: one write per batch the stream hands over, flushed as it
    comes (after the first, the loop turns once, so the first events leave before the rest of
    a burst is relayed); a stream that breaks ends with an OpenAI-style error event, then
    `[DONE]`.

    Writes from the task serving the request, in one loop: Starlette's StreamingResponse
    (under an ASGI server older than spec 2.4, such as the Functions worker's uvicorn)
    writes from a new task of an anyio task group, one hop later, through a generator per
    layer. A plain task beside the loop waits for `http.disconnect` and cancels the loop,
    which closes the upstream at once.
    """

    media_type = "text/event-stream"

    def __init__(self, events: EventStream, headers: Mapping[str, str] | None = None) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        serving = asyncio.current_task()
        assert serving is not None
        state = {"writing": True, "gone": False}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if state["writing"]:
                state["gone"] = True
                serving.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        events = self.events
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            try:
                if (batch := await events.next_batch()) is not None:
                    await send(_events_message(batch))
                    # Let the loop send the first events before we go on: uvloop sends one
                    # loop iteration's writes together, at its end.
                    await asyncio.sleep(0)
                    while (batch := await events.next_batch()) is not None:
                        await send(_events_message(batch))
                tail = SSE_DONE
            except GatewayError as err:
                tail = sse_event(err.body()) + SSE_DONE
            state["writing"] = False
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except asyncio.CancelledError:
            # Our own cancellation (the caller left) ends the response quietly; any other
            # is passed on.
            if not state["gone"] or serving.uncancel() > 0:
                raise
        finally:
            state["writing"] = False
            watcher.cancel()
            await events.aclose()


def _events_message(batch: list[Any]) -> dict[str, Any]:
    """One ASGI body message carrying a batch of chunks as server-sent events."""
    return {"type": "http.response.body", "body": b"".join(map(sse_event, batch)), "more_body": True}
