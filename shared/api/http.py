"""HTTP adapters: a Starlette/FastAPI `Request` in, a response out.

`function_app.py` calls these; so does the local host. All logic lives in the
router and the gateway; these functions translate, and map every error to an
OpenAI-style body in one place (`responses.error_response`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from shared.errors import ConfigError, ConfigUnavailable, GatewayError, NotFound, PayloadTooLarge
from shared.gateway import Gateway, get_gateway

from .request import decode_body, parse_chat_request
from .responses import (
    SSE_HEADERS, EventStreamResponse, error_response, internal_error, json_response, route_headers,
)

Handler = Callable[[Request, Gateway], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Resolve the gateway and turn every error into an OpenAI-style response."""

    async def endpoint(req: Request) -> Response:
        try:
            gateway = get_gateway()
        except ConfigError as exc:
            return error_response(ConfigUnavailable(str(exc)))
        try:
            await gateway.start()
            return await handler(req, gateway)
        except GatewayError as err:
            return error_response(err)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:  # never a traceback to the caller
            return internal_error(exc)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


_ROUTING_HEADERS = frozenset({b"content-length", b"x-task-type", b"x-routing-strategy"})


def _routing_headers(req: Request) -> dict[str, str]:
    """The request headers the chat endpoints read, first value of each, in one pass over the
    ASGI headers (lower-case names, as ASGI servers deliver them) instead of a Starlette
    `Headers` object and a scan per lookup."""
    found: dict[str, str] = {}
    for name, value in req.scope["headers"]:
        if name in _ROUTING_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _read_body(req: Request, limit: int, declared: str | None) -> bytes:
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    parts = []
    size = 0
    async for part in req.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _chat_request(req: Request, gateway: Gateway):
    limits = gateway.config.limits
    headers = _routing_headers(req)
    body = decode_body(await _read_body(req, limits.max_body_bytes, headers.get("content-length")), limits)
    return parse_chat_request(body, limits, headers)


@_endpoint
async def chat_completions(req: Request, gateway: Gateway) -> Response:
    """POST /api/v1/chat/completions: OpenAI-compatible, routed, streamed or not."""
    request = await _chat_request(req, gateway)
    if not request.stream:
        completion = await gateway.router.complete(request)
        return json_response(completion, 200, route_headers(completion.get("route")))
    routed = await gateway.router.open_stream(request)
    headers = {**route_headers(routed.route()), **SSE_HEADERS}
    return EventStreamResponse(routed, headers)


@_endpoint
async def route_decision(req: Request, gateway: Gateway) -> Response:
    """POST /api/v1/route: the routing decision for a request, without calling a provider."""
    request = await _chat_request(req, gateway)
    decision = await gateway.explain(request)
    return json_response({"route": decision}, 200, route_headers({**decision, "attempts": [
        {"provider": s["provider"], "outcome": "skipped", "reason": s["reason"]} for s in decision["skipped"]
    ]}))


@_endpoint
async def list_models(req: Request, gateway: Gateway) -> Response:
    """GET /api/v1/models: `auto`, every route and every provider, in the OpenAI list format."""
    owned = "llm-router-gateway"
    data = [{"id": "auto", "object": "model", "created": 0, "owned_by": owned}]
    data += [{"id": name, "object": "model", "created": 0, "owned_by": owned} for name in gateway.config.routes]
    data += [{"id": name, "object": "model", "created": 0, "owned_by": p.kind}
             for name, p in gateway.config.providers.items()]
    return json_response({"object": "list", "data": data})


@_endpoint
async def routing_routes(req: Request, gateway: Gateway) -> Response:
    """GET /api/routing/routes: the effective route table, providers and prices (no secrets)."""
    return json_response(gateway.routes_view())


@_endpoint
async def breakers_status(req: Request, gateway: Gateway) -> Response:
    """GET /api/routing/breakers: every breaker's shared state as this instance sees it."""
    return json_response({"breakers": await gateway.breakers.status()})


def _path_provider(req: Request, gateway: Gateway) -> str:
    parts = req.url.path.rstrip("/").split("/")
    name = unquote(parts[-2]) if len(parts) >= 2 else ""
    if name not in gateway.config.providers:
        raise NotFound(f"no provider named {name[:100]!r}", param="provider", code="provider_not_found")
    return name


@_endpoint
async def breaker_reset(req: Request, gateway: Gateway) -> Response:
    """POST /api/routing/breakers/{provider}/reset (admin): close the breaker."""
    name = _path_provider(req, gateway)
    await gateway.breakers.reset(name)
    return json_response({"provider": name, "action": "reset", "breakers": await gateway.breakers.status()})


@_endpoint
async def breaker_isolate(req: Request, gateway: Gateway) -> Response:
    """POST /api/routing/breakers/{provider}/isolate (admin): hold the breaker open until reset."""
    name = _path_provider(req, gateway)
    await gateway.breakers.isolate(name)
    return json_response({"provider": name, "action": "isolate", "breakers": await gateway.breakers.status()})


@_endpoint
async def routing_costs(req: Request, gateway: Gateway) -> Response:
    """GET /api/routing/costs?from=&to=&group_by=: usage and cost totals with the saving."""
    return json_response(await gateway.cost_report(dict(req.query_params), datetime.now(timezone.utc)))


async def health(req: Request) -> Response:
    """GET /api/health (anonymous): liveness and config status; `?deep=true` probes providers."""
    try:
        gateway = get_gateway()
    except ConfigError as exc:
        return json_response({"status": "error", "config": {"status": "invalid", "source": exc.source,
                                                            "problems": exc.problems}}, 503)
    try:
        await gateway.start()
        body = await gateway.health(deep=req.query_params.get("deep", "").lower() in ("1", "true", "yes"))
        return json_response(body)
    except Exception as exc:
        return internal_error(exc)
