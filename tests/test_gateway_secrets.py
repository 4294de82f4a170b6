"""Provider keys from the (fake) Key Vault through the (fake) managed identity, end to end:
the real SecretClient and azure-identity credential inside a real Gateway, over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx2 as httpx
import pytest

from shared import gateway as gateway_module
from shared.telemetry import events
from tests.certs import make_self_signed
from tests.fakes.identity import AZURE_CREDENTIAL_ENV, FakeIdentityEndpoint
from tests.fakes.keyvault import FakeKeyVault
from tests.fakes.llm import FakeLLM, Fault
from tests.gateway_helpers import azure_provider, function_app_asgi, openai_provider

CANARY = "sk-canary-7Hq2Zx9Lw4Pm1Nd6-must-never-leak"
ROTATED = "sk-rotated-4Fv8Yt3Rk6Bs0Jc2-also-secret"
AZURE_ENV = (*AZURE_CREDENTIAL_ENV, "LLM_TABLE_CONNECTION", "AzureWebJobsStorage",
             "APPLICATIONINSIGHTS_CONNECTION_STRING")


class IssuedToken:
    """Compares equal to any token the fake identity endpoint issued (for FakeLLM.entra_token)."""

    def __init__(self, identity: FakeIdentityEndpoint) -> None:
        self.identity = identity

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.identity.valid(other)

    __hash__ = None


@pytest.fixture(scope="module")
def asgi():
    return function_app_asgi()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("gw-kv-tls"))


@pytest.fixture
async def world(monkeypatch, cert):
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    identity = FakeIdentityEndpoint()
    await identity.start()
    for k, v in identity.env().items():
        monkeypatch.setenv(k, v)
    vault = FakeKeyVault(cert, identity.valid)
    vault.set_secret("cheap-key", CANARY)
    await vault.start()
    cheap = FakeLLM("cheap", api_key=CANARY, reply="[cheap] the answer")
    backup = FakeLLM("backup", api_key="unused")
    backup.entra_token = IssuedToken(identity)
    await cheap.start()
    await backup.start()
    doc = {
        "secrets": {"source": "keyvault", "vault_url": vault.url, "refresh_min_interval_seconds": 0.0},
        "providers": {
            "cheap": openai_provider(cheap, "mini", secret="cheap-key"),
            "backup": {**azure_provider(backup, "gpt-4o"), "auth": "entra_id"},
        },
        "routes": {"default": {"candidates": ["cheap", "backup"], "strategy": "cost"}},
    }
    doc["providers"]["backup"].pop("api_key_secret")
    monkeypatch.setenv("LLM_ROUTING_CONFIG", json.dumps(doc))
    monkeypatch.setenv("LLM_KEYVAULT_INSECURE_DEV_MODE", "1")
    monkeypatch.setenv("LLM_KEYVAULT_CA_BUNDLE", str(cert.cert_path))
    await gateway_module.reset_gateway()
    yield identity, vault, cheap, backup
    await gateway_module.reset_gateway()
    for f in (cheap, backup, vault, identity):
        await f.stop()


@pytest.fixture
def client(asgi):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://gateway")


def chat(client, **body):
    body.setdefault("messages", [{"role": "user", "content": "Summarize: the sky is blue today."}])
    return client.post("/api/v1/chat/completions", json=body)


async def test_key_comes_from_the_vault_and_is_cached(world, client):
    identity, vault, cheap, _ = world
    for _ in range(5):
        r = await chat(client)
        assert r.status_code == 200 and r.headers["X-LLM-Provider"] == "cheap"
    assert vault.total_reads() == 1
    assert cheap.chat_calls[-1].headers["Authorization"] == f"Bearer {CANARY}"


async def test_rotation_with_zero_failed_requests(world, client):
    identity, vault, cheap, backup = world
    assert (await chat(client)).status_code == 200
    cheap.api_key = ROTATED  # the provider now rejects the old key ...
    vault.set_secret("cheap-key", ROTATED)  # ... and the vault holds the new one
    responses = await asyncio.gather(*(chat(client) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.headers["X-LLM-Provider"] == "cheap" for r in responses)
    assert not backup.chat_calls  # carried on with the rotated key, no failover needed
    breakers = (await client.get("/api/routing/breakers")).json()["breakers"]
    cheap_breaker = next(b for b in breakers if b["provider"] == "cheap")
    assert cheap_breaker["consecutive_failures"] == 0 and cheap_breaker["state"] == "closed"


async def test_entra_id_token_for_azure_openai_and_no_key(world, client):
    identity, vault, cheap, backup = world
    r = await chat(client, model="backup")
    assert r.status_code == 200, r.text
    auth = backup.chat_calls[-1].headers["Authorization"]
    assert auth.startswith("Bearer ") and identity.valid(auth[7:])
    assert "api-key" not in backup.chat_calls[-1].headers
    await chat(client, model="backup")
    assert identity.by_resource["https://cognitiveservices.azure.com"] == 1  # token cached


async def test_vault_down_with_cached_value_keeps_serving(world, client):
    identity, vault, cheap, _ = world
    assert (await chat(client)).status_code == 200
    await vault.stop()
    secrets = gateway_module.get_gateway().secrets
    real_clock = secrets._clock
    secrets._clock = lambda: real_clock() + 3600  # an hour later: past the TTL, within max_stale
    r = await chat(client)
    assert r.status_code == 200 and r.headers["X-LLM-Provider"] == "cheap"
    status = secrets.status()["cheap-key"]
    assert CANARY not in json.dumps(status)


async def test_unresolvable_secret_fails_closed_with_a_clear_reason(world, client):
    identity, vault, cheap, backup = world
    del vault.secrets["cheap-key"]  # the vault does not have it
    r = await client.post("/api/v1/route", json={"messages": [{"role": "user", "content": "hi"}]})
    route = r.json()["route"]
    reason = next(s["reason"] for s in route["skipped"] if s["provider"] == "cheap")
    assert "cheap-key" in reason
    r = await chat(client)
    assert r.status_code == 200 and r.headers["X-LLM-Provider"] == "backup"
    assert not cheap.chat_calls  # never called without its key
    assert "cheap:skipped" in r.headers["X-LLM-Attempts"]
    health = (await client.get("/api/health")).json()
    assert health["providers"]["cheap"]["secret"]["name"] == "cheap-key"


async def test_canary_secret_never_leaks(world, client, caplog):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    identity, vault, cheap, backup = world
    caplog.set_level(logging.DEBUG)
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    events.use_providers(tp, MeterProvider(metric_readers=[reader]))
    bodies: list[str] = []
    try:
        async def record(resp):
            bodies.append(resp.text + json.dumps(dict(resp.headers)))

        await record(await chat(client))                                         # success
        cheap.fail_next(1, status=500)
        await record(await chat(client))                                         # failover
        cheap.fail_next(1, status=400, body={"error": {"message": "bad request", "code": "x"}})
        await record(await chat(client))                                         # pass-through 4xx
        cheap.set_fault(Fault.error(503))
        backup.set_fault(Fault.error(503))
        await record(await chat(client))                                         # all failed
        cheap.clear_faults(), backup.clear_faults()
        cheap.inject(Fault.reset_mid_body(after_chunks=1))
        async with client.stream("POST", "/api/v1/chat/completions", json={
                "stream": True, "model": "cheap", "messages": [{"role": "user", "content": "a b c"}]}) as s:
            bodies.append("".join([line async for line in s.aiter_lines()]))      # interrupted stream
        cheap.api_key = ROTATED
        vault.set_secret("cheap-key", ROTATED)
        await record(await chat(client))                                         # rotation
        for path in ("/api/health?deep=true", "/api/routing/routes", "/api/routing/breakers", "/api/v1/models"):
            await record(await client.get(path))
        await record(await client.post("/api/v1/route", json={"messages": [{"role": "user", "content": "x"}]}))
    finally:
        events.use_providers()
    reader.collect()
    exported = json.dumps([{"name": s.name, "attrs": dict(s.attributes or {}),
                            "events": [dict(e.attributes or {}) for e in s.events]} for s in spans.get_finished_spans()])
    metric_data = reader.get_metrics_data()
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (CANARY, ROTATED):
        assert secret not in logs
        assert secret not in exported
        assert secret not in str(metric_data)
        for body in bodies:
            assert secret not in body
    assert spans.get_finished_spans(), "telemetry was exported (the check above is not vacuous)"
    assert len(bodies) >= 10
