"""Security properties: no header injection, no secret/prompt/completion text in logs, loopback-only
local host.

Covered elsewhere and referenced from docs/security.md:
* auth levels (chat/route/models/routing endpoints `function`, breaker reset/isolate `admin`,
  health `anonymous`), checked through the real Functions worker:
  tests/test_worker_indexing.py::test_every_function_has_exactly_the_expected_route_methods_and_auth_level;
* the devhost's non-loopback warning: tests/test_devhost.py::test_network_warning_only_for_non_loopback;
* secret values never leaking from the secret providers themselves, on every vault path:
  tests/test_secrets.py::test_canary_value_never_leaks;
* no key in /api/routing/routes or /api/health: tests/test_e2e_http.py::test_models_routes_health_and_breakers.
"""

from __future__ import annotations

import json
import logging
import re
import socket

import pytest

from devhost.__main__ import parse_args
from devhost.testing import start_devhost
from shared.api.responses import error_response, route_headers
from shared.config import build_config
from shared.errors import AllProvidersFailed, ConfigError
from tests.fakes.llm import FakeLLM, FakeLLMThread, Fault
from tests.gateway_helpers import make_gateway, openai_provider
from tests.gateway_helpers import asgi_client

PROMPT_CANARY = "prompt-canary-Vq3Lr8-hush"
COMPLETION_CANARY = "completion-canary-Xk9Pw2-hush"
KEY_CANARY = "sk-key-canary-Jd5Tn7-hush-0123456789"
CANARIES = (PROMPT_CANARY, COMPLETION_CANARY, KEY_CANARY)
INJECT = "\r\nX-Injected: yes\r\n"
PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


# -- header injection ---------------------------------------------------------------------------


def base_doc() -> dict:
    return {"providers": {"a": {"kind": "ollama", "endpoint": "http://127.0.0.1:9", "model": "m"}},
            "routes": {"default": {"candidates": ["a"]}}}


@pytest.mark.parametrize("where", ["provider", "route", "secret"])
def test_names_that_reach_headers_cannot_carry_cr_lf(where):
    doc = base_doc()
    if where == "provider":
        doc["providers"][f"a{INJECT}"] = doc["providers"]["a"]
    elif where == "route":
        doc["routes"][f"r{INJECT}"] = {"candidates": ["a"]}
    else:
        doc["providers"]["a"].update(kind="openai", api_key_secret=f"k{INJECT}")
    with pytest.raises(ConfigError) as info:
        build_config(doc, "test")
    assert "does not match" in str(info.value)


def test_route_headers_are_printable_ascii_whatever_the_route_holds():
    evil = f"x{INJECT}é\u2028\x00\x7f"
    route = {"task_type": evil, "strategy": evil, "provider": evil, "model": evil, "route": evil,
             "request_id": evil, "confidence": 0.5, "cost_usd": 0.1, "cost_estimated": True,
             "attempts": [{"provider": evil, "outcome": "failed", "reason": evil}] * 3}
    for name, value in route_headers(route).items():
        assert PRINTABLE.match(value), (name, value)
    err = AllProvidersFailed(evil, headers={"Retry-After": evil}, extra={"route": route})
    response = error_response(err)
    for name, value in response.headers.items():
        assert PRINTABLE.match(value), (name, value)
    assert "x-injected" not in {k.lower() for k in response.headers}


def raw_exchange(base_url: str, path: str, body: dict) -> tuple[list[str], bytes]:
    """POST over a bare socket; return the raw response header lines and the body bytes."""
    host, port = base_url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert all(b < 0x80 for b in head), head  # header bytes are ASCII only
    return head.decode("ascii").split("\r\n"), rest


# -- a local host subprocess over fakes with canaries -------------------------------------------


@pytest.fixture(scope="module")
def fakes():
    primary = FakeLLM("primary", api_key=KEY_CANARY, reply=f"[primary] {COMPLETION_CANARY} and more words")
    backup = FakeLLM("backup", api_key="k-backup", reply=f"[backup] {COMPLETION_CANARY} again")
    with FakeLLMThread(primary, backup):
        yield primary, backup


def canary_doc(primary: FakeLLM, backup: FakeLLM) -> dict:
    return {
        "providers": {
            # A model name holding CR/LF: accepted as a value, but it must never split a header.
            "primary": openai_provider(primary, f"p-model{INJECT}é", price=(0.0001, 0.0001),
                                       timeouts={"stream_idle_seconds": 0.5, "first_byte_seconds": 1.0}),
            "backup": openai_provider(backup, "b-model", price=(0.001, 0.001)),
        },
        "routes": {"default": {"candidates": ["primary", "backup"], "strategy": "cost"}},
        "limits": {"total_timeout_seconds": 5},
    }


@pytest.fixture(scope="module")
def devhost(fakes):
    primary, backup = fakes
    env = {"LLM_ROUTING_CONFIG": json.dumps(canary_doc(primary, backup)), "PRIMARY_KEY": KEY_CANARY,
           "BACKUP_KEY": "k-backup", "LLM_TABLE_CONNECTION": None, "AzureWebJobsStorage": None,
           "LLM_KEYVAULT_URL": None}
    url, stop = start_devhost(env=env)  # the default --log-level INFO, as in Azure
    yield url, stop
    stop()


@pytest.fixture(autouse=True)
def clean(fakes):
    for f in fakes:
        f.clear_faults()
    yield
    for f in fakes:
        f.clear_faults()


def chat(text: str = f"Please summarise {PROMPT_CANARY} for me", **kw) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **kw}


ECHO = {"error": {"message": f"cannot process '{PROMPT_CANARY}' with key {KEY_CANARY}{INJECT}é",
                  "type": "invalid_request_error", "param": "messages", "code": "bad_input"}}


def flows(primary: FakeLLM, backup: FakeLLM):
    """(setup, request body, expected status) for every success and failure path worth logging."""
    yield lambda: None, chat(), 200
    yield lambda: None, chat(stream=True, stream_options={"include_usage": True}), 200
    yield lambda: primary.inject(Fault.error(503, body=ECHO)), chat(), 200  # failover
    yield lambda: primary.inject(Fault.error(503, body=ECHO)), chat(stream=True), 200
    yield lambda: primary.inject(Fault.error(400, body=ECHO)), chat(), 400  # passed to the caller, not logged
    yield lambda: primary.inject(Fault.error_first_event(f"{PROMPT_CANARY} {KEY_CANARY}")), chat(stream=True), 200
    yield lambda: primary.inject(Fault.reset_mid_body(after_chunks=1)), chat(stream=True), 200  # interrupted
    yield lambda: primary.inject(Fault.stall(after_chunks=1, max_stall=2)), chat(stream=True), 200
    yield lambda: primary.inject(Fault.malformed_json()), chat(), 200
    yield lambda: (primary.set_fault(Fault.error(500, body=ECHO)),
                   backup.set_fault(Fault.error(429, body=ECHO, retry_after=3))), chat(), 503
    yield lambda: primary.clear_faults() or backup.clear_faults(), {"messages": [{"role": PROMPT_CANARY, "content": "x"}]}, 400
    yield lambda: None, {"messages": [{"role": "user", "content": PROMPT_CANARY}], "temperature": PROMPT_CANARY}, 400
    yield lambda: None, chat(model=PROMPT_CANARY), 404


def test_no_canary_in_the_local_host_output_and_headers_stay_clean(devhost, fakes):
    url, stop = devhost
    statuses = []
    for setup, body, expected in flows(*fakes):
        setup()
        lines, rest = raw_exchange(url, "/api/v1/chat/completions", body)
        status = int(lines[0].split()[1])
        statuses.append(status)
        assert status == expected, (body, lines, rest[:300])
        assert not [h for h in lines[1:] if h.lower().startswith("x-injected")], lines
        assert all(":" in h for h in lines[1:]), lines  # every line is a header: nothing was split
        headers = dict(h.split(": ", 1) for h in lines[1:])
        if status == 200 and "X-LLM-Model" in headers:
            assert PRINTABLE.match(headers["X-LLM-Model"])
        if status >= 400:
            assert json.loads(rest)["error"]["code"]
    output = stop.output()
    assert "devhost listening on http://127.0.0.1:" in output  # loopback, as started by default
    assert "gateway.events" in output or "INFO" in output  # the host logged at INFO meanwhile
    for canary in CANARIES:
        assert canary not in output, canary


async def test_no_canary_in_logs_at_info_in_process(caplog):
    """The same flows through the HTTP adapters in-process, with every logger at INFO."""
    caplog.set_level(logging.INFO)
    for name in ("shared", "gateway", "aiohttp", "azure", "devhost", "uvicorn"):
        caplog.set_level(logging.INFO, logger=name)
    primary = FakeLLM("primary", api_key=KEY_CANARY, reply=f"[primary] {COMPLETION_CANARY} and more words")
    backup = FakeLLM("backup", api_key="k-backup", reply=f"[backup] {COMPLETION_CANARY} again")
    await primary.start()
    await backup.start()
    gw = make_gateway(canary_doc(primary, backup), {"PRIMARY_KEY": KEY_CANARY, "BACKUP_KEY": "k-backup"})
    await gw.start()
    seen_bodies = []
    try:
        async with asgi_client(gw) as client:
            for setup, body, expected in flows(primary, backup):
                setup()
                r = await client.post("/api/v1/chat/completions", json=body)
                assert r.status_code == expected, (body, r.text[:300])
                seen_bodies.append(r.text)
                for value in r.headers.values():
                    assert PRINTABLE.match(value)
            primary.clear_faults()
            backup.clear_faults()
            for name in ("primary", "backup"):
                await gw.breakers.reset(name)
            primary.api_key = "rotated-elsewhere"  # our key is now rejected (401): the auth path
            r = await client.post("/api/v1/chat/completions", json=chat())
            assert r.status_code == 200 and r.headers["X-LLM-Provider"] == "backup"
            assert r.headers["X-LLM-Attempts"].startswith("primary:failed(auth 401)"), r.headers["X-LLM-Attempts"]
    finally:
        await gw.close()
        await primary.stop()
        await backup.stop()
    assert any(COMPLETION_CANARY in b for b in seen_bodies)  # the canaries did flow through
    assert caplog.records
    logged = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    logged += "\n".join(repr(r.__dict__) for r in caplog.records)
    for canary in CANARIES:
        assert canary not in logged, canary


def test_local_host_binds_loopback_unless_told_otherwise():
    assert parse_args([]).host == "127.0.0.1"
    assert parse_args(["--port", "0"]).host == "127.0.0.1"
