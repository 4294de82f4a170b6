"""A tiny HTTP-streams function app for the devhost tests (never deployed)."""

from __future__ import annotations

import asyncio
import os
import threading

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response, StreamingResponse

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# Streaming gates, shared with a test running the host in a thread of the same process:
# the stream yields its first chunk, then waits (bounded) until the test opens the gate.
GATES: dict[str, threading.Event] = {}
GATE_WAIT_S = 5.0


@app.route(route="items/{id:int}", methods=["GET"])
async def get_item(req: Request) -> Response:
    return JSONResponse({"path_params": dict(req.path_params), "query": dict(req.query_params)})


@app.route(route="files/{*rest}", methods=["GET"])
async def get_file(req: Request) -> Response:
    return JSONResponse({"path_params": dict(req.path_params)})


@app.route(route="greet/{name?}", methods=["GET"])
async def greet(req: Request) -> Response:
    return JSONResponse({"path_params": dict(req.path_params)})


@app.route(route="echo", methods=["POST", "PUT"])
async def echo(req: Request) -> Response:
    body = await req.body()
    return Response(body, media_type=req.headers.get("content-type", "application/octet-stream"),
                    headers={"x-method": req.method, "x-url": str(req.url)})


@app.route(route="sync", methods=["GET"])
def sync_function(req: Request) -> Response:
    return JSONResponse({"thread": threading.current_thread().name})


@app.route(route="boom", methods=["GET"])
async def boom(req: Request) -> Response:
    raise RuntimeError("secret-ish detail that must not reach the client")


@app.route(route="setting/{name}", methods=["GET"])
async def setting(req: Request) -> Response:
    return JSONResponse({"value": os.environ.get(req.path_params["name"])})


@app.route(route="pid", methods=["GET"])
async def pid(req: Request) -> Response:
    return JSONResponse({"pid": os.getpid()})


@app.route(route="stream/{gate}", methods=["GET"])
async def stream(req: Request) -> Response:
    gate = GATES.get(req.path_params["gate"])

    async def chunks():
        yield b"data: first\n\n"
        if gate is not None:
            await asyncio.to_thread(gate.wait, GATE_WAIT_S)
        yield b"data: second\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.route(route="stream-fails", methods=["GET"])
async def stream_fails(req: Request) -> Response:
    async def chunks():
        yield b"data: first\n\n"
        raise RuntimeError("upstream went away")

    return StreamingResponse(chunks(), media_type="text/event-stream")
