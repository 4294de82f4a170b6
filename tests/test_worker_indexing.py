"""The real Functions Python worker indexes function_app.py as deployed, and rejects broken apps.

`app.get_functions()` accepts apps the worker refuses (a classic HttpRequest function in a
streams app, a `-> func.HttpResponse` annotation, an unbound or misnamed parameter). These tests
run `azure_functions_runtime` itself through tests/worker_index_probe.py, one subprocess per app
(the worker and the HTTP extension keep module-level state), all started at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.worker_index_probe import MARKER

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "worker_index_probe.py"
PROBE_TIMEOUT_S = 60.0

# route -> (methods, auth level): what function_app.py must expose, exactly.
EXPECTED = {
    "v1/chat/completions": (["POST"], "function"),
    "v1/route": (["POST"], "function"),
    "v1/models": (["GET"], "function"),
    "routing/routes": (["GET"], "function"),
    "routing/breakers": (["GET"], "function"),
    "routing/breakers/{provider}/reset": (["POST"], "admin"),
    "routing/breakers/{provider}/isolate": (["POST"], "admin"),
    "routing/costs": (["GET"], "function"),
    "health": (["GET"], "anonymous"),
}

_HEADER = '''\
import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="fine", methods=["GET"])
async def fine(req: Request) -> Response:
    return JSONResponse({})
'''

# name -> (extra source, fragments the worker's error must contain); None: the worker accepts it.
BROKEN = {
    "classic_beside_streams": ('''
@app.route(route="classic", methods=["GET"])
def classic(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hi")
''', ["cannot load the classic function", "HttpRequest"]),
    "http_response_annotation": ('''
@app.route(route="annotated", methods=["GET"])
async def annotated(req: Request) -> func.HttpResponse:
    return JSONResponse({})
''', ["cannot load the annotated function", 'return annotation "HttpResponse"']),
    "misnamed_parameter": ('''
@app.route(route="misnamed", methods=["GET"])
async def misnamed(request: Request) -> Response:
    return JSONResponse({})
''', ["cannot load the misnamed function", "'request'"]),
    "unbound_extra_parameter": ('''
@app.route(route="extra", methods=["GET"])
async def extra(req: Request, tenant: str) -> Response:
    return JSONResponse({})
''', ["cannot load the extra function", "'tenant'"]),
    "duplicate_route": ('''
@app.route(route="Fine/", methods=["GET"])
async def fine_again(req: Request) -> Response:
    return JSONResponse({})
''', None),
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_ENABLE_OPENTELEMETRY",
                 "PYTHON_SCRIPT_FILE_NAME", "PYTHON_ENABLE_DEBUG_LOGGING", "PYTHONPATH"):
        env.pop(name, None)
    env["PYTHON_ENABLE_INIT_INDEXING"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _parse(name: str, proc: subprocess.Popen[str], stdout: str, stderr: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise AssertionError(f"probe {name} (exit {proc.returncode}) printed no result\n"
                         f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Mapping[str, dict]:
    """Worker results for function_app.py ('app') and every BROKEN app, probed in parallel."""
    dirs = {"app": ROOT}
    for name, (extra, _) in BROKEN.items():
        d = tmp_path_factory.mktemp(name)
        (d / "function_app.py").write_text(_HEADER + textwrap.dedent(extra), encoding="utf-8")
        dirs[name] = d
    env = _env()
    procs = {
        name: subprocess.Popen([sys.executable, str(PROBE), str(d)], cwd=str(d), env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        for name, d in dirs.items()
    }
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    results = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results[name] = _parse(name, proc, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return results


def route_shape(route: str) -> str:
    """How the host compares routes: case-insensitive, parameter names and slashes irrelevant."""
    return re.sub(r"\{[^{}:=?]*", "{", route.strip("/").lower())


def duplicate_routes(functions: Iterable[Mapping]) -> list[str]:
    """Every (method, route) served by more than one function; no methods means all methods."""
    owners: dict[tuple[str, str], list[str]] = {}
    for fn in functions:
        methods = fn["methods"] or ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]
        for method in methods:
            owners.setdefault((method, route_shape(fn["route"] or fn["name"])), []).append(fn["name"])
    return [f"{m} {r}: {', '.join(names)}" for (m, r), names in sorted(owners.items()) if len(names) > 1]


# 1. The app as deployed ------------------------------------------------------------------------

def test_worker_indexes_the_app_without_error(indexed):
    result = indexed["app"]
    assert result["ok"], f"{result['error']}\n{result['stack_trace']}"


def test_every_function_has_exactly_the_expected_route_methods_and_auth_level(indexed):
    functions = indexed["app"]["functions"]
    actual = {fn["route"]: (fn["methods"], fn["auth_level"]) for fn in functions}
    assert len(functions) == len(actual), "two functions declare the same route"
    assert actual == EXPECTED


def test_every_function_binds_the_request_as_req(indexed):
    for fn in indexed["app"]["functions"]:
        assert fn["trigger_param"] == "req", fn["name"]
        assert [b["type"] for b in fn["bindings"]] == ["httpTrigger", "http"], fn["name"]


def test_the_worker_serves_the_app_as_http_streams(indexed):
    result = indexed["app"]
    assert result["capabilities"].get("HttpUri", "").startswith("http://127.0.0.1:")
    assert result["capabilities"].get("RequiresRouteParameters") == "true"
    # Its streams server answered, and refused a request the host did not send.
    assert result["streams_server_status"] == 500


def test_the_workers_streams_server_parses_http_with_httptools():
    """The HTTP extension runs uvicorn with its defaults (`http="auto"`), which parses requests
    with httptools when it is installed and with the pure-Python h11 otherwise; so the
    deployed requirements carry httptools, and pin the uvicorn the local host also runs."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(lambda scope, receive, send: None, host="127.0.0.1", port=0)  # as the extension builds it
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    deployed = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^httptools==\S+$", deployed, re.M) and re.search(r"^uvicorn==\S+$", deployed, re.M)


# 2. Routes the host would refuse ---------------------------------------------------------------

def test_no_two_functions_share_a_route_and_method(indexed):
    assert duplicate_routes(indexed["app"]["functions"]) == []


def test_duplicate_check_has_teeth(indexed):
    result = indexed["duplicate_route"]
    assert result["ok"], "the worker itself does not check duplicate routes"
    assert duplicate_routes(result["functions"]) == ["GET fine: fine, fine_again"]


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ({"route": "x/{id}", "methods": ["GET"]}, {"route": "X/{other}/", "methods": ["GET"]}, True),
        ({"route": "x/{id:int}", "methods": ["GET"]}, {"route": "x/{n:int}", "methods": ["GET"]}, True),
        ({"route": "x", "methods": []}, {"route": "x", "methods": ["PATCH"]}, True),
        ({"route": "x", "methods": ["GET"]}, {"route": "x", "methods": ["POST"]}, False),
        ({"route": "x/{id:int}", "methods": ["GET"]}, {"route": "x/{id}", "methods": ["GET"]}, False),
    ],
)
def test_duplicate_routes(a, b, clash):
    found = duplicate_routes([{"name": "a", **a}, {"name": "b", **b}])
    assert bool(found) is clash


# 3. The worker check has teeth -----------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n, (_, frags) in BROKEN.items() if frags is not None])
def test_worker_rejects_a_broken_app(indexed, name):
    result = indexed[name]
    assert not result["ok"]
    assert "FunctionLoadError" in result["error"]
    for fragment in BROKEN[name][1]:
        assert fragment in result["error"]
