"""Telemetry events and the usage ledger as the router produces them, and the cost report
over HTTP, with the ledger and breakers on real Azurite shared by several gateway instances."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx2 as httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import gateway as gateway_module
from shared.providers.base import ChatRequest
from shared.telemetry import events
from tests.fakes.llm import FakeLLM, Fault
from tests.gateway_helpers import azure_provider, env_for, function_app_asgi, make_gateway, openai_provider

PROMPT_CANARY = "zebra-canary-prompt-3141"
REPLY_CANARY = "zebra-canary-reply-2718"
CHEAP, PREMIUM = (0.0002, 0.0008), (0.003, 0.012)


@pytest.fixture
async def fakes():
    cheap = FakeLLM("cheap", api_key="k1", reply=f"[cheap] {REPLY_CANARY}")
    premium = FakeLLM("premium", api_key="k2", reply=f"[premium] {REPLY_CANARY}")
    await cheap.start(), await premium.start()
    yield cheap, premium
    await cheap.stop(), await premium.stop()


def doc_for(cheap, premium):
    return {
        "providers": {"cheap": openai_provider(cheap, "mini", price=CHEAP, quality=0.7),
                      "premium": azure_provider(premium, "big", price=PREMIUM, quality=0.95)},
        "routes": {"code": {"candidates": ["premium", "cheap"], "strategy": "quality"},
                   "default": {"candidates": ["cheap", "premium"]}},
        "breaker": {"consecutive_failures": 2, "min_calls": 100},
        "cost": {"baseline_provider": "premium"},
    }


@pytest.fixture
def otel():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    events.use_providers(tp, MeterProvider(metric_readers=[reader]))
    yield spans, reader
    events.use_providers()


def span_events(spans):
    out = []
    for s in spans.get_finished_spans():
        attrs = dict(s.attributes or {})
        out.append((attrs.get("gateway.event"), attrs))
    return out


def ask(text=f"Summarize this please: {PROMPT_CANARY}", **kw):
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


async def test_router_emits_named_events_for_success_failover_breaker_and_stream(fakes, otel):
    spans, reader = otel
    cheap, premium = fakes
    gw = make_gateway(doc_for(cheap, premium), env_for(cheap, premium))
    try:
        await gw.router.complete(ask(task_type="qa"))
        cheap.set_fault(Fault.error(503))
        await gw.router.complete(ask(task_type="qa"))
        await gw.router.complete(ask(task_type="qa"))  # second failure trips the breaker
        cheap.clear_faults()
        chunks = [c async for c in gw.router.stream(ask(task_type="code", stream=True))]
        assert chunks
    finally:
        await gw.close()
    got = span_events(spans)
    names = [n for n, _ in got]
    assert names.count("request_completed") == 4 and names.count("route_decided") == 4
    completed = [a for n, a in got if n == "request_completed"]
    assert completed[0]["gateway.provider"] == "cheap" and completed[0]["gateway.status"] == 200
    assert completed[0]["gateway.tokens_in"] > 0 and completed[0]["gateway.cost_usd"] > 0
    assert completed[1]["gateway.provider"] == "premium"
    assert completed[3]["gateway.stream"] is True and completed[3]["gateway.ttft_s"] > 0
    failed = [a for n, a in got if n == "attempt_failed"]
    assert failed and failed[0]["gateway.provider"] == "cheap" and failed[0]["gateway.error_class"] == "http_503"
    fo = [a for n, a in got if n == "failover"]
    assert fo and fo[0]["gateway.from_provider"] == "cheap" and fo[0]["gateway.to_provider"] == "premium"
    transitions = [a for n, a in got if n == "breaker_transition"]
    assert any(a["gateway.provider"] == "cheap" and a["gateway.to_state"] == "open" for a in transitions)
    decided = [a for n, a in got if n == "route_decided"]
    assert decided[0]["gateway.task_type"] == "qa" and decided[0]["gateway.chosen"] == "cheap"
    blob = json.dumps([a for _, a in got], default=str) + str(reader.get_metrics_data())
    assert PROMPT_CANARY not in blob and REPLY_CANARY not in blob and "k1" not in blob.split('"')


async def test_ledger_on_azurite_from_several_instances_gives_exact_totals(fakes, azurite):
    cheap, premium = fakes
    table = f"usage{uuid.uuid4().hex[:8]}"
    env = {**env_for(cheap, premium), "LLM_TABLE_CONNECTION": azurite.connection_string,
           "LLM_USAGE_TABLE": table, "LLM_BREAKER_TABLE": f"brk{uuid.uuid4().hex[:8]}"}
    gateways = [make_gateway(doc_for(cheap, premium), env) for _ in range(3)]
    for gw in gateways:
        await gw.start()
    expected_cost = 0.0
    expected_requests = 0

    async def one(gw, i):
        nonlocal expected_cost, expected_requests
        if i % 3 == 0:
            routed = await gw.router.open_stream(ask(task_type="code", stream=True))
            async for _ in routed:
                pass
            expected_cost += routed.cost_usd
        else:
            result = await gw.router.complete(ask(task_type="qa" if i % 2 else "code"))
            expected_cost += result["route"]["cost_usd"]
        expected_requests += 1

    await asyncio.gather(*(one(gateways[i % 3], i) for i in range(30)))
    for gw in gateways:
        await gw.close()  # final flush
    reader = make_gateway(doc_for(cheap, premium), env)
    try:
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc)
        report = await reader.cost_report({"from": (now - timedelta(days=1)).date().isoformat(),
                                           "to": now.date().isoformat(), "group_by": "provider"}, now)
    finally:
        await reader.close()
    totals = report["totals"]
    assert totals["requests"] == expected_requests == 30
    assert totals["cost_usd"] == pytest.approx(expected_cost, rel=1e-9)
    assert {g["key"] for g in report["groups"]} == {"cheap", "premium"}
    streamed = next(g for g in report["groups"] if g["key"] == "premium")
    assert streamed["cost_usd"] > 0  # streamed requests are costed, not recorded at zero
    assert report["baseline"]["name"] == "premium"
    assert totals["saving_usd"] == pytest.approx(totals["baseline_cost_usd"] - totals["cost_usd"])
    assert totals["saving_usd"] > 0


async def test_cost_report_over_http_and_its_validation(fakes, monkeypatch):
    cheap, premium = fakes
    monkeypatch.setenv("LLM_ROUTING_CONFIG", json.dumps(doc_for(cheap, premium)))
    for k, v in env_for(cheap, premium).items():
        monkeypatch.setenv(k, v)
    for k in ("LLM_TABLE_CONNECTION", "AzureWebJobsStorage", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        monkeypatch.delenv(k, raising=False)
    await gateway_module.reset_gateway()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=function_app_asgi()), base_url="http://gw")
    try:
        costs = []
        for task in ("qa", "qa", "summarization", "code"):
            r = await client.post("/api/v1/chat/completions", headers={"X-Task-Type": task},
                                  json={"messages": [{"role": "user", "content": "hello there"}]})
            costs.append(float(r.headers["X-LLM-Cost-USD"]))
        r = await client.get("/api/routing/costs?group_by=task_type")
        assert r.status_code == 200
        report = r.json()
        assert report["totals"]["requests"] == 4
        assert report["totals"]["cost_usd"] == pytest.approx(sum(costs), abs=1e-7)
        assert {g["key"] for g in report["groups"]} == {"qa", "summarization", "code"}
        assert report["totals"]["saving_pct"] > 0
        for query, param in (("from=yesterday", "from"), ("from=2026-01-01&to=2025-01-01", "from"),
                             ("from=2020-01-01&to=2026-01-01", "to"), ("group_by=color", "group_by")):
            bad = await client.get(f"/api/routing/costs?{query}")
            assert bad.status_code == 400, query
            assert bad.json()["error"]["param"] in (param, "from", "to"), query
    finally:
        await client.aclose()
        await gateway_module.reset_gateway()
