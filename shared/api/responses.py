"""Response building: OpenAI-style error bodies, route headers, SSE framing."""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from starlette.responses import Response

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


async def sse_stream(batches: AsyncIterator[list[Any]], on_close) -> AsyncIterator[bytes]:
    """Frame chunks as SSE, one write per batch; an interrupted stream ends with an error
    event, then [DONE]."""
    try:
        try:
            async for batch in batches:
                yield b"".join(map(sse_event, batch))
        except GatewayError as err:
            yield sse_event(err.body())
        yield SSE_DONE
    finally:
        await on_close()
