"""Fault injection: every provider and platform failure the gateway must survive, one test each.

Provider faults run through the Python API (the router over wire-level fakes) and, where the
HTTP mapping matters (503 Retry-After, 504 attempts), through the function app's HTTP adapters
in-process. Platform faults use the real Azurite, the fake Key Vault and a devhost subprocess.
Already covered elsewhere, cross-referenced here: stream reset after commit
(tests/test_router.py::test_stream_broken_after_commit_raises_interrupted), client disconnect
(tests/test_e2e_http.py::test_client_disconnect_cancels_upstream).

Every timeout here is short and every wait bounded: the module runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from devhost.testing import start_devhost
from shared.errors import AllProvidersFailed, DeadlineExceeded
from shared.providers.base import ChatRequest
from shared.routing.streaming import StreamInterrupted
from tests.certs import make_self_signed
from tests.fakes.identity import FakeIdentityEndpoint
from tests.fakes.keyvault import FakeKeyVault
from tests.fakes.llm import FakeLLM, Fault, GarbageServer, closed_port_url
from tests.gateway_helpers import env_for, make_gateway, openai_provider
from tests.test_fuzz import asgi_client

ROOT = Path(__file__).resolve().parent.parent

# Per-attempt timeouts of the flaky primary: short, so timeouts fail over in well under a second.
FAST = {"connect_seconds": 1.0, "first_byte_seconds": 0.4, "total_seconds": 0.8, "stream_idle_seconds": 0.3}


def ask(text: str = "Hello there, how are you today?", **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def doc_for(primary_endpoint: str, backup: FakeLLM, *, limits=None, breaker=None) -> dict:
    doc = {
        "providers": {
            "primary": {"kind": "openai", "endpoint": primary_endpoint, "model": "p-model",
                        "api_key_secret": "primary-key", "price": {"input_per_1k": 0.0001, "output_per_1k": 0.0002},
                        "timeouts": FAST},
            "backup": openai_provider(backup, "b-model", price=(0.01, 0.02)),
        },
        "routes": {"default": {"candidates": ["primary", "backup"], "strategy": "cost"}},
    }
    if limits:
        doc["limits"] = limits
    if breaker:
        doc["breaker"] = breaker
    return doc


@pytest.fixture
async def fakes():
    primary, backup = FakeLLM("primary", api_key="k-primary"), FakeLLM("backup", api_key="k-backup")
    await primary.start()
    await backup.start()
    yield primary, backup
    await primary.stop()
    await backup.stop()


@pytest.fixture
async def build(fakes):
    """`build(endpoint=None, **doc_kw)`: a started gateway whose primary is `endpoint`
    (default: the primary fake) and whose backup is the healthy backup fake."""
    primary, backup = fakes
    made = []

    async def make(endpoint: str | None = None, **kw):
        gw = make_gateway(doc_for(endpoint or primary.openai_base_url, backup, **kw),
                          {"PRIMARY_KEY": primary.api_key, **env_for(backup)})
        await gw.start()
        made.append(gw)
        return gw

    yield make
    for gw in made:
        await gw.close()


async def collect(routed) -> str:
    text = []
    async for chunk in routed:
        for choice in chunk.get("choices") or ():
            text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def served_by_backup(gw, stream: bool = False) -> list[dict]:
    """Run one request; assert the backup answered it in full; return the attempts."""
    if stream:
        routed = await gw.router.open_stream(ask(stream=True))
        text = await collect(routed)
        route = routed.route()
    else:
        result = await gw.router.complete(ask())
        text = result["choices"][0]["message"]["content"]
        route = result["route"]
    assert route["provider"] == "backup", route
    assert text.startswith("[backup]")
    assert route["attempts"][0]["provider"] == "primary"
    assert route["attempts"][0]["outcome"] == "failed"
    assert route["attempts"][-1] == {**route["attempts"][-1], "provider": "backup", "outcome": "ok"}
    return route["attempts"]


# -- provider faults ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_fails_over(build, stream):
    gw = await build(closed_port_url() + "/v1")
    attempts = await served_by_backup(gw, stream)
    assert attempts[0]["reason"] == "connect_error"


async def test_reset_mid_body_fails_over(build, fakes):
    fakes[0].inject(Fault.reset_mid_body())
    attempts = await served_by_backup(await build())
    assert attempts[0]["reason"] == "connect_error"  # the body broke off: not a usable answer


@pytest.mark.parametrize("stream", [False, True])
async def test_tls_garbage_fails_over(build, stream):
    async with GarbageServer() as garbage:
        gw = await build(garbage.url + "/v1")
        attempts = await served_by_backup(gw, stream)
        assert garbage.connections >= 1
    assert attempts[0]["reason"] in ("protocol_error", "connect_error")


@pytest.mark.parametrize("stream", [False, True])
async def test_slow_headers_time_out_and_fail_over(build, fakes, stream):
    fakes[0].inject(Fault.slow_headers(3.0))
    gw = await build()
    t0 = time.monotonic()
    attempts = await served_by_backup(gw, stream)
    assert time.monotonic() - t0 < 1.5  # first_byte_seconds is 0.4, not the fake's 3 s
    assert attempts[0]["reason"] in ("timeout", "no first token in time")


async def test_slow_body_is_bounded_by_the_attempt_timeout(build, fakes):
    fakes[0].inject(Fault.slow_body(3.0))  # headers at once, half the body, then 3 s of silence
    gw = await build()
    t0 = time.monotonic()
    attempts = await served_by_backup(gw)
    assert time.monotonic() - t0 < 1.8  # total_seconds is 0.8
    assert attempts[0]["reason"] == "timeout"


async def test_slow_but_alive_stream_is_not_cut(build, fakes):
    fakes[0].inject(Fault.slow_body(0.1))  # 0.1 s between chunks, under stream_idle_seconds 0.3
    gw = await build()
    routed = await gw.router.open_stream(ask(stream=True))
    assert routed.provider == "primary"
    assert (await collect(routed)).startswith("[primary]")


async def test_stream_stalled_before_first_token_fails_over(build, fakes):
    fakes[0].inject(Fault.stall(after_chunks=0, max_stall=3.0))
    gw = await build()
    t0 = time.monotonic()
    attempts = await served_by_backup(gw, stream=True)
    assert time.monotonic() - t0 < 1.8
    assert attempts[0]["reason"] == "no first token in time"


async def test_stream_stalled_after_commit_ends_within_the_idle_timeout(build, fakes):
    fakes[0].inject(Fault.stall(after_chunks=1, max_stall=3.0))
    gw = await build()
    routed = await gw.router.open_stream(ask(stream=True))
    t0 = time.monotonic()
    with pytest.raises(StreamInterrupted, match="stalled"):
        await collect(routed)
    assert time.monotonic() - t0 < 1.5  # stream_idle_seconds is 0.3
    assert routed.route()["attempts"][-1]["outcome"] == "interrupted"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("stream", [False, True])
async def test_5xx_fails_over(build, fakes, status, stream):
    fakes[0].inject(Fault.error(status))
    attempts = await served_by_backup(await build(), stream)
    assert attempts[0]["status"] == status and attempts[0]["reason"] == f"http_status {status}"


async def test_429_with_retry_after_opens_the_breaker_and_503_carries_retry_after(build, fakes):
    primary, backup = fakes
    gw = await build()
    primary.set_fault(Fault.error(429, retry_after=30))
    attempts = await served_by_backup(gw)
    assert attempts[0]["status"] == 429
    calls = primary.call_count
    attempts = (await gw.router.complete(ask()))["route"]["attempts"]  # primary now skipped, not called
    assert attempts[0]["outcome"] == "skipped" and primary.call_count == calls
    state = {b["provider"]: b for b in await gw.breakers.status()}["primary"]
    assert state["state"] == "open"

    backup.set_fault(Fault.error(429, retry_after=12))
    with pytest.raises(AllProvidersFailed) as info:
        await gw.router.complete(ask())
    retry_after = int(info.value.headers["Retry-After"])
    assert 1 <= retry_after <= 12  # the soonest any candidate may be tried again

    async with asgi_client(gw) as client:  # the same over HTTP: 503 + Retry-After header
        r = await client.post("/api/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "all_providers_failed"
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert "primary:skipped" in r.headers["X-LLM-Attempts"]


async def test_429_without_retry_after_counts_toward_the_breaker(build, fakes):
    primary, backup = fakes
    gw = await build(breaker={"consecutive_failures": 2, "open_seconds": 20})
    primary.set_fault(Fault.error(429))
    attempts = await served_by_backup(gw)
    state = {b["provider"]: b for b in await gw.breakers.status()}["primary"]
    assert attempts[0]["status"] == 429 and state["state"] == "closed"  # one 429 alone does not trip
    await served_by_backup(gw)  # the second consecutive failure trips it
    calls = primary.call_count
    assert (await gw.router.complete(ask()))["route"]["attempts"][0]["outcome"] == "skipped"
    assert primary.call_count == calls

    backup.set_fault(Fault.error(429))  # no Retry-After anywhere: the breaker's open time is the hint
    with pytest.raises(AllProvidersFailed) as info:
        await gw.router.complete(ask())
    assert [a["outcome"] for a in info.value.extra["route"]["attempts"]] == ["skipped", "failed"]
    assert 1 <= int(info.value.headers["Retry-After"]) <= 20


@pytest.mark.parametrize("stream", [False, True])
async def test_200_with_malformed_json_fails_over(build, fakes, stream):
    fakes[0].inject(Fault.malformed_json() if not stream else Fault.malformed_chunk(after_chunks=0))
    attempts = await served_by_backup(await build(), stream)
    assert attempts[0]["reason"] == "protocol_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_200_whose_first_event_is_an_error_fails_over(build, fakes, stream):
    fakes[0].inject(Fault.error_first_event("The server had an error"))
    attempts = await served_by_backup(await build(), stream)
    assert attempts[0]["reason"] in ("http_status", "protocol_error")


async def test_huge_response_fails_over_without_being_read(build, fakes):
    primary = fakes[0]
    primary.inject(Fault.huge(4_000_000))  # 4 MB against a 64 KiB limit
    gw = await build(limits={"max_response_bytes": 65536})
    t0 = time.monotonic()
    attempts = await served_by_backup(gw)
    assert attempts[0]["reason"] == "response_too_large"
    assert time.monotonic() - t0 < 2.0
    await primary.wait_until(lambda: primary.calls[-1].ended is not None, timeout=3.0)
    assert gw.http.open_connections() <= 2  # the oversized response's connection was dropped, not pooled


async def test_huge_stream_is_cut_at_the_limit(build, fakes):
    primary = fakes[0]
    primary.inject(Fault.huge(4_000_000))
    gw = await build(limits={"max_response_bytes": 65536})
    routed = await gw.router.open_stream(ask(stream=True))
    received = 0
    try:
        async for chunk in routed:
            received += sum(len((c.get("delta") or {}).get("content") or "") for c in chunk.get("choices") or ())
    except StreamInterrupted as err:
        assert "larger than 65536" in err.message
    else:  # the limit hit before the first token: failed over to the backup
        assert routed.provider == "backup"
    assert received <= 65536


# -- the total deadline ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_total_deadline_is_504_with_the_attempts(fakes, stream):
    primary, backup = fakes
    slow = {"first_byte_seconds": 30, "total_seconds": 30}
    doc = {
        "providers": {"primary": openai_provider(primary, "p", timeouts=slow, price=(0.001, 0.001)),
                      "backup": openai_provider(backup, "b", timeouts=slow, price=(0.002, 0.002))},
        "routes": {"default": {"candidates": ["primary", "backup"], "strategy": "cost"}},
        "limits": {"total_timeout_seconds": 1.0},
    }
    primary.latency = 0.5  # primary: a 503 after half the budget; backup: far too slow
    primary.set_fault(Fault.error(503))
    backup.set_fault(Fault.slow_headers(5.0))
    gw = make_gateway(doc, env_for(primary, backup))
    await gw.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            if stream:
                await gw.router.open_stream(ask(stream=True))
            else:
                await gw.router.complete(ask())
        elapsed = time.monotonic() - t0
        assert elapsed < 1.5, elapsed  # the 1 s budget, plus a small margin; not backup's 5 s
        assert info.value.status == 504 and info.value.code == "deadline_exceeded"
        attempts = info.value.extra["route"]["attempts"]
        assert [a["provider"] for a in attempts] == ["primary", "backup"]

        async with asgi_client(gw) as client:
            t0 = time.monotonic()
            r = await client.post("/api/v1/chat/completions",
                                  json={"stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        assert time.monotonic() - t0 < 1.5
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert "backup:failed" in r.headers["X-LLM-Attempts"]
        assert [a["provider"] for a in r.json()["error"]["route"]["attempts"]][-1] == "backup"
    finally:
        await gw.close()
