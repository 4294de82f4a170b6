"""HTTP adapters: Starlette/FastAPI request in, response out. (stub, being built)"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def _stub(name):
    async def handler(req: Request) -> Response:
        return JSONResponse({"error": {"message": f"{name} not implemented yet", "type": "server_error", "param": None, "code": "not_implemented"}}, status_code=501)
    handler.__name__ = name
    return handler


chat_completions = _stub("chat_completions")
route_decision = _stub("route_decision")
list_models = _stub("list_models")
routing_routes = _stub("routing_routes")
breakers_status = _stub("breakers_status")
breaker_reset = _stub("breaker_reset")
breaker_isolate = _stub("breaker_isolate")
routing_costs = _stub("routing_costs")


async def health(req: Request) -> Response:
    return JSONResponse({"status": "ok"})
