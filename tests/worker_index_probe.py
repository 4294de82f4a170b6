"""Index a function app with the real Functions Python worker, as the host would, and report.

    python tests/worker_index_probe.py APP_DIR

Drives `azure_functions_runtime` (the worker for Python 3.13+) through WorkerInitRequest and
FunctionsMetadataRequest, with small stand-ins for the host's protobuf messages. The worker
imports APP_DIR/function_app.py, runs its binding checks and, for an HTTP-streams app, starts
its streams web server (on 127.0.0.1 and a free port; checked once, then cancelled).

Prints one line `WORKER_INDEX_RESULT <json>` on stdout (other output may surround it):
    ok, error, stack_trace, capabilities, streams_server_status,
    functions: [{name, route, methods, auth_level, trigger_param, bindings}]

Runs in its own process because the worker and the HTTP extension keep module-level state.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from types import SimpleNamespace
from typing import Any

MARKER = "WORKER_INDEX_RESULT "
HOST = "127.0.0.1"


class _Message:
    """A protobuf message stand-in: keyword fields become attributes."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _message(name: str, **constants: Any) -> type:
    return type(name, (_Message,), constants)


def stand_in_protos() -> SimpleNamespace:
    """The message classes and enum values of FunctionRpc.proto the worker touches while indexing."""
    binding_info = _message("BindingInfo", out=1, inout=2, undefined=0, string=1, binary=2, stream=3)
    setattr(binding_info, "in", 0)
    return SimpleNamespace(
        WorkerInitResponse=_message("WorkerInitResponse"),
        FunctionMetadataResponse=_message("FunctionMetadataResponse"),
        StatusResult=_message("StatusResult", Failure=0, Success=1, Cancelled=2),
        RpcException=_message("RpcException"),
        WorkerMetadata=_message("WorkerMetadata"),
        RpcFunctionMetadata=_message("RpcFunctionMetadata"),
        BindingInfo=binding_info,
        RpcRetryOptions=_message("RpcRetryOptions"),
    )


def _request(protos: SimpleNamespace, app_dir: str) -> SimpleNamespace:
    init = SimpleNamespace(capabilities={}, function_app_directory=app_dir, host_version="4.1000.0",
                           worker_directory=app_dir, log_categories={})
    inner = SimpleNamespace(worker_init_request=init, functions_metadata_request=SimpleNamespace(
        function_app_directory=app_dir))
    return SimpleNamespace(request=inner, properties={"host": HOST, "protos": protos})


def _describe(metadata: Any) -> dict[str, Any]:
    bindings = [json.loads(raw) for raw in metadata.raw_bindings]
    trigger = next((b for b in bindings if b.get("type") == "httpTrigger"), {})
    return {
        "name": metadata.name,
        "route": trigger.get("route"),
        "methods": [m.upper() for m in trigger.get("methods") or []],
        "auth_level": str(trigger.get("authLevel", "")).lower() or None,
        "trigger_param": trigger.get("name"),
        "bindings": bindings,
    }


async def _status_of(uri: str, timeout: float = 5.0) -> int | None:
    """Status of one GET to the worker's streams server (no invocation id: it must refuse)."""
    host, port = uri.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(f"GET /api/probe HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - loop.time()))
            return int(line.split()[1]) if line else None
        finally:
            writer.close()
    return None


async def probe(app_dir: str) -> dict[str, Any]:
    import azure_functions_runtime as worker

    protos = stand_in_protos()
    request = _request(protos, app_dir)
    result: dict[str, Any] = {"ok": False, "error": None, "stack_trace": None, "capabilities": {},
                              "streams_server_status": None, "functions": []}
    init = await worker.worker_init_request(request)
    result["capabilities"] = dict(init.capabilities)
    if init.result.status != protos.StatusResult.Success:
        result["error"] = init.result.exception.message
        result["stack_trace"] = init.result.exception.stack_trace
        return result
    meta = await worker.functions_metadata_request(request)
    if meta.result.status != protos.StatusResult.Success:
        result["error"] = "functions_metadata_request failed"
        return result
    result["functions"] = [_describe(m) for m in meta.function_metadata_results or []]
    uri = result["capabilities"].get("HttpUri")
    if uri:
        result["streams_server_status"] = await _status_of(uri)
    result["ok"] = True
    return result


async def _main(app_dir: str) -> dict[str, Any]:
    try:
        return await probe(app_dir)
    finally:
        await _stop_streams_server()


async def _stop_streams_server() -> None:
    """Stop the worker's streams server: ask its uvicorn.Server to exit, cancel what remains."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if not tasks:
        return
    if "uvicorn" in sys.modules:
        import gc

        import uvicorn

        for obj in gc.get_objects():
            if isinstance(obj, uvicorn.Server):
                obj.should_exit = True
        _, tasks = await asyncio.wait(tasks, timeout=3.0)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=3.0)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    app_dir = os.path.abspath(argv[0])
    # Import the app as the worker does: from its directory, not from this script's.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    sys.path.insert(0, app_dir)
    os.chdir(app_dir)
    result = asyncio.run(_main(app_dir))
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
