"""The local host: route templates, settings, dispatch, streaming, errors, and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import azure.functions as func
import pytest
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, Response

from devhost import SettingsError, build_asgi, convert_route, load_local_settings, read_route_prefix
from devhost.__main__ import DemoUnavailable, load_demo
from devhost.app import DevHostError
from devhost.routes import RouteTemplateError
from devhost.server import network_warning, serve_in_thread
from devhost.testing import PROJECT_ROOT, start_devhost
from tests import devhost_fixture_app as fixture

TIMEOUT = aiohttp.ClientTimeout(total=10)


# --- route templates ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("template", "paths", "defaults"),
    [
        ("health", ("/api/health",), {}),
        ("v1/chat/completions", ("/api/v1/chat/completions",), {}),
        ("routing/breakers/{provider}/reset", ("/api/routing/breakers/{provider:str}/reset",), {}),
        ("items/{id:int}", ("/api/items/{id:int}",), {}),
        ("items/{id:long}", ("/api/items/{id:int}",), {}),
        ("m/{x:double}", ("/api/m/{x:float}",), {}),
        ("u/{id:guid}", ("/api/u/{id:uuid}",), {}),
        ("a/{word:alpha}", ("/api/a/{word:fx_alpha}",), {}),
        ("greet/{name?}", ("/api/greet/{name:str}", "/api/greet"), {}),
        ("page/{n:int?}", ("/api/page/{n:int}", "/api/page"), {}),
        ("lang/{code=en}", ("/api/lang/{code:str}", "/api/lang"), {"code": "en"}),
        ("files/{*rest}", ("/api/files/{rest:path}", "/api/files"), {}),
        ("files/{**rest}", ("/api/files/{rest:path}", "/api/files"), {}),
        ("{name}.{ext}", ("/api/{name:str}.{ext:str}",), {}),
        ("/leading/slash/", ("/api/leading/slash",), {}),
    ],
)
def test_convert_route(template, paths, defaults):
    converted = convert_route(template)
    assert converted.paths == paths
    assert converted.defaults == defaults


def test_convert_route_uses_the_prefix_and_allows_none():
    assert convert_route("x/{id}", "gw/v2").paths == ("/gw/v2/x/{id:str}",)
    assert convert_route("x", "").paths == ("/x",)


def test_convert_route_reports_unenforced_constraints():
    converted = convert_route("u/{name:minlength(3)}")
    assert converted.paths == ("/api/u/{name:str}",)
    assert converted.unenforced == ("name:minlength(3)",)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("files/{*rest}/more", "catch-all must be the last"),
        ("{name?}.txt", "must fill its segment"),
        ("a/{id}/{id}", "repeated"),
        ("a/{id", "unbalanced"),
        ("a/{9x}", "bad parameter name"),
    ],
)
def test_convert_route_rejects_bad_templates(template, fragment):
    with pytest.raises(RouteTemplateError, match=fragment) as info:
        convert_route(template)
    assert template in str(info.value)


# --- settings ------------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_local_settings_fill_the_environment_but_existing_variables_win(tmp_path):
    path = _write(tmp_path / "local.settings.json",
                  json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file", "FLAG": True, "N": 3}}))
    env = {"B": "env"}
    result = load_local_settings(path, env)
    assert env == {"A": "file", "B": "env", "FLAG": "true", "N": "3"}
    assert result.applied == ("A", "FLAG", "N")
    assert result.skipped == ("B",)


def test_missing_local_settings_is_fine_unless_required(tmp_path):
    env: dict[str, str] = {}
    assert load_local_settings(tmp_path / "nope.json", env).path is None
    assert env == {}
    with pytest.raises(SettingsError, match="nope.json"):
        load_local_settings(tmp_path / "nope.json", env, required=True)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"Values": []}', "'Values' must be an object"),
        ('{"Values": {"X": {"nested": 1}}}', "Values.X must be a string"),
        ('{"IsEncrypted": true, "Values": {}}', "IsEncrypted"),
    ],
)
def test_invalid_local_settings_name_the_file(tmp_path, text, fragment):
    path = _write(tmp_path / "my.settings.json", text)
    with pytest.raises(SettingsError) as info:
        load_local_settings(path, {})
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_route_prefix_from_host_json(tmp_path):
    assert read_route_prefix(tmp_path / "missing.json") == "api"
    assert read_route_prefix(_write(tmp_path / "a.json", '{"version": "2.0"}')) == "api"
    assert read_route_prefix(_write(tmp_path / "b.json", '{"extensions": {"http": {"routePrefix": ""}}}')) == ""
    assert read_route_prefix(_write(tmp_path / "c.json", '{"extensions": {"http": {"routePrefix": "/gw/"}}}')) == "gw"
    with pytest.raises(SettingsError, match="d.json"):
        read_route_prefix(_write(tmp_path / "d.json", "{"))


def test_project_host_json_prefix_is_api():
    assert read_route_prefix(PROJECT_ROOT / "host.json") == "api"


# --- building the app --------------------------------------------------------------------------

def _app_with(*routes: tuple[str, str]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for index, (route, method) in enumerate(routes):
        async def handler(req: Request) -> Response:
            return JSONResponse({})
        handler.__name__ = f"f{index}"
        app.route(route=route, methods=[method])(handler)
    return app


@pytest.mark.parametrize(
    "routes",
    [
        (("same", "GET"), ("same", "GET")),
        (("Same/{a}", "POST"), ("same/{b}/", "POST")),
    ],
)
def test_duplicate_route_and_method_is_an_error(routes):
    with pytest.raises(DevHostError, match="both serve"):
        build_asgi(_app_with(*routes))


def test_same_route_with_different_methods_is_fine():
    asgi = build_asgi(_app_with(("same", "GET"), ("same", "POST")))
    assert [f.name for f in asgi.functions] == ["f0", "f1"]


def test_get_functions_is_called_once_per_app():
    app = _app_with(("once", "GET"))
    first = build_asgi(app)
    second = build_asgi(app)  # a second get_functions() would raise
    assert [f.name for f in first.functions] == [f.name for f in second.functions] == ["f0"]


def test_network_warning_only_for_non_loopback():
    assert network_warning("127.0.0.1") is None
    assert network_warning("localhost") is None
    assert network_warning("::1") is None
    assert "reachable from the network" in network_warning("0.0.0.0")


def test_demo_hook_reports_a_missing_module_clearly():
    with pytest.raises(DemoUnavailable, match="devhost._no_such_demo"):
        load_demo("devhost._no_such_demo")


# --- serving (in a thread) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def host():
    handle = serve_in_thread(fixture.app, 0)
    yield handle.base_url
    handle.stop()


async def _get(url: str, method: str = "GET", **kwargs):
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.request(method, url, **kwargs) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def test_route_values_arrive_as_strings(host):
    status, _, body = await _get(f"{host}/api/items/42?x=1")
    assert status == 200
    assert json.loads(body) == {"path_params": {"id": "42"}, "query": {"x": "1"}}


async def test_int_constraint_rejects_other_values(host):
    status, _, body = await _get(f"{host}/api/items/abc")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/api/files", {}),
        ("/api/greet/ada", {"name": "ada"}),
        ("/api/greet", {}),
        ("/API/Greet/Ada/", {"name": "Ada"}),  # case and trailing slash ignored, values kept
    ],
)
async def test_catch_all_optional_and_case_insensitive_routes(host, path, params):
    status, _, body = await _get(host + path)
    assert status == 200
    assert json.loads(body) == {"path_params": params}


async def test_unknown_path_is_an_openai_404(host):
    status, headers, body = await _get(f"{host}/api/nowhere")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": {"message": "No function serves /api/nowhere.",
                                          "type": "invalid_request_error", "param": None, "code": "not_found"}}


@pytest.mark.parametrize("method", ["DELETE", "HEAD"])
async def test_wrong_method_is_an_openai_405(host, method):
    status, headers, body = await _get(f"{host}/api/echo", method)
    assert status == 405
    assert headers["Allow"] == "POST, PUT"
    if method != "HEAD":
        error = json.loads(body)["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "method_not_allowed"
        assert error["param"] is None


async def test_request_body_method_and_url_reach_the_function(host):
    status, headers, body = await _get(f"{host}/api/echo?q=1", "PUT", data=b'{"a": 1}',
                                       headers={"content-type": "application/json"})
    assert status == 200
    assert body == b'{"a": 1}'
    assert headers["x-method"] == "PUT"
    assert headers["x-url"] == f"{host}/api/echo?q=1"


async def test_sync_functions_run_off_the_event_loop(host):
    status, _, body = await _get(f"{host}/api/sync")
    assert status == 200
    assert not json.loads(body)["thread"].startswith("devhost:")


async def test_a_function_exception_is_a_500_without_details(host, caplog):
    with caplog.at_level(logging.ERROR, logger="devhost"):
        status, _, body = await _get(f"{host}/api/boom")
    assert status == 500
    error = json.loads(body)["error"]
    assert error["type"] == "server_error"
    assert "boom" in error["message"]
    assert b"Traceback" not in body and b"secret-ish" not in body
    assert any("boom" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_streaming_sends_each_chunk_before_the_next_exists(host):
    gate = threading.Event()
    fixture.GATES["t-stream"] = gate
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.get(f"{host}/api/stream/t-stream") as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                assert resp.headers.get("Transfer-Encoding") == "chunked"
                first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3.0)
                # The function is still parked before its second chunk: nothing was buffered.
                assert first == b"data: first\n\n"
                assert not gate.is_set()
                gate.set()
                rest = await asyncio.wait_for(resp.read(), 5.0)
        assert rest == b"data: second\n\ndata: [DONE]\n\n"
    finally:
        gate.set()
        fixture.GATES.pop("t-stream", None)


async def test_a_stream_failing_midway_ends_the_body_early(host, caplog):
    with caplog.at_level(logging.ERROR, logger="devhost"):
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.get(f"{host}/api/stream-fails") as resp:
                assert resp.status == 200
                first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3.0)
                assert first == b"data: first\n\n"
                with pytest.raises(aiohttp.ClientPayloadError):
                    await asyncio.wait_for(resp.read(), 5.0)
    assert any("stream_fails" in r.getMessage() for r in caplog.records)


# --- the CLI, as a subprocess --------------------------------------------------------------------

def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_start_devhost_serves_the_real_app_and_prints_its_routes():
    started = time.monotonic()
    base_url, stop = start_devhost()
    try:
        assert time.monotonic() - started < 30
        assert base_url.startswith("http://127.0.0.1:")
        status, body = _fetch(base_url + "/api/health")  # 503 until a routing config is set
        assert status in (200, 503) and "status" in json.loads(body)
        status, body = _fetch(base_url + "/api/v1/nothing")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    finally:
        stop()
    out = stop.output()
    for line in [
        f"chat_completions: [POST] {base_url}/api/v1/chat/completions  (authLevel: function)",
        f"breaker_reset: [POST] {base_url}/api/routing/breakers/{{provider}}/reset  (authLevel: admin)",
        f"health: [GET] {base_url}/api/health  (authLevel: anonymous)",
    ]:
        assert line in out
    assert "Function keys are not enforced" in out
    assert stop.proc.returncode == 0


def test_settings_file_and_environment_precedence(tmp_path):
    settings = _write(tmp_path / "local.settings.json",
                      json.dumps({"IsEncrypted": False, "Values": {"DEVHOST_T_A": "file", "DEVHOST_T_B": "file"}}))
    base_url, stop = start_devhost(app="tests.devhost_fixture_app:app", settings=settings,
                                   env={"DEVHOST_T_B": "env", "DEVHOST_T_A": None},
                                   ready_path="/api/setting/DEVHOST_T_A")
    try:
        assert json.loads(_fetch(base_url + "/api/setting/DEVHOST_T_A")[1]) == {"value": "file"}
        assert json.loads(_fetch(base_url + "/api/setting/DEVHOST_T_B")[1]) == {"value": "env"}
    finally:
        stop()
    assert "kept the environment's value for: DEVHOST_T_B" in stop.output()


def _worker_pids(base_url: str, want: int, attempts: int = 200) -> set[int]:
    """The pids answering /api/pid over fresh connections (at most `attempts`)."""
    pids: set[int] = set()
    for _ in range(attempts):
        status, body = _fetch(base_url + "/api/pid")
        assert status == 200
        pids.add(json.loads(body)["pid"])
        if len(pids) >= want:
            break
    return pids


def _gone(pids: set[int], within: float = 10.0) -> bool:
    import psutil

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_worker_process_count_serves_one_port_from_that_many_processes():
    import psutil

    base_url, stop = start_devhost(app="tests.devhost_fixture_app:app", ready_path="/api/pid",
                                   env={"FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    try:
        children = {c.pid for c in psutil.Process(stop.proc.pid).children()}
        pids = _worker_pids(base_url, want=2)
        assert len(pids) == 2 and pids == children  # the workers answer; the parent only supervises
    finally:
        stop()
    assert stop.proc.returncode == 0
    assert "2 workers; Ctrl+C to stop" in stop.output()
    assert _gone(children)


def test_worker_processes_end_with_their_parent_even_when_it_is_killed():
    import psutil

    base_url, stop = start_devhost(app="tests.devhost_fixture_app:app", ready_path="/api/pid",
                                   env={"FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    try:
        children = {c.pid for c in psutil.Process(stop.proc.pid).children()}
        assert len(children) == 2
        _worker_pids(base_url, want=1)
        stop.proc.kill()
        stop.proc.wait(5)
        assert _gone(children)
    finally:
        stop()


@pytest.mark.parametrize("value", ["0", "11", "two", "-1"])
def test_a_bad_worker_process_count_names_the_setting_and_where_it_came_from(tmp_path, value):
    result = _run_cli("--port", "0", "--no-settings", extra_env={"FUNCTIONS_WORKER_PROCESS_COUNT": value})
    assert result.returncode == 2 and "listening" not in result.stdout
    assert f"FUNCTIONS_WORKER_PROCESS_COUNT must be a whole number from 1 to 10 (from the environment), got {value!r}" in result.stderr
    settings = _write(tmp_path / "local.settings.json",
                      json.dumps({"Values": {"FUNCTIONS_WORKER_PROCESS_COUNT": value}}))
    result = _run_cli("--port", "0", "--settings", str(settings), extra_env={"FUNCTIONS_WORKER_PROCESS_COUNT": None})
    assert result.returncode == 2
    assert f"(from {settings})" in result.stderr


def _run_cli(*args: str, cwd=PROJECT_ROOT, extra_env=None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-m", "devhost", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)


def test_invalid_settings_file_is_a_clear_error(tmp_path):
    bad = _write(tmp_path / "broken.settings.json", '{"Values": {')
    result = _run_cli("--port", "0", "--settings", str(bad))
    assert result.returncode == 2
    assert f"devhost: error: {bad}: invalid JSON" in result.stderr
    assert "listening" not in result.stdout


def test_help_says_environment_wins():
    result = _run_cli("--help")
    assert result.returncode == 0
    assert "variables already set in the environment win" in result.stdout
    assert "--demo" in result.stdout
