"""Azure Functions entry point: adapts HTTP to `shared.api.http` and nothing else.

Importing `azurefunctions.extensions.http.fastapi` switches the app to HTTP
streams: every function takes the FastAPI `Request` and returns a FastAPI
response, which lets chat completions stream chunk by chunk.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.api import http as api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="v1/chat/completions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def chat_completions(req: Request) -> Response:
    return await api.chat_completions(req)


@app.route(route="v1/route", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def route_decision(req: Request) -> Response:
    return await api.route_decision(req)


@app.route(route="v1/models", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_models(req: Request) -> Response:
    return await api.list_models(req)


@app.route(route="routing/routes", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def routing_routes(req: Request) -> Response:
    return await api.routing_routes(req)


@app.route(route="routing/breakers", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def breakers_status(req: Request) -> Response:
    return await api.breakers_status(req)


@app.route(route="routing/breakers/{provider}/reset", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def breaker_reset(req: Request) -> Response:
    return await api.breaker_reset(req)


@app.route(route="routing/breakers/{provider}/isolate", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def breaker_isolate(req: Request) -> Response:
    return await api.breaker_isolate(req)


@app.route(route="routing/costs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def routing_costs(req: Request) -> Response:
    return await api.routing_costs(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: Request) -> Response:
    return await api.health(req)
