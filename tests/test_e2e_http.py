"""End to end over real HTTP: the local host serving function_app.py, the official
`openai` SDK as the client, wire-level fake providers behind the gateway."""

from __future__ import annotations

import json
import time

import httpx2 as httpx
import openai
import pytest

from devhost.testing import start_devhost
from tests.fakes.llm import FakeLLM, FakeLLMThread, Fault, closed_port_url
from tests.gateway_helpers import azure_provider, env_for, ollama_provider, openai_provider

CHEAP_PRICE = (0.00015, 0.0006)


@pytest.fixture(scope="module")
def fakes():
    cheap, premium, local = FakeLLM("cheap", api_key="k-cheap"), FakeLLM("premium", api_key="k-prem"), FakeLLM("local")
    thread = FakeLLMThread(cheap, premium, local)
    with thread:
        yield thread, cheap, premium, local


@pytest.fixture(scope="module")
def gateway_url(fakes):
    thread, cheap, premium, local = fakes
    doc = {
        "providers": {
            "cheap": openai_provider(cheap, "mini", price=CHEAP_PRICE, quality=0.7, expected_latency_ms=900),
            "premium": azure_provider(premium, "gpt-4o", quality=0.92, expected_latency_ms=1500, fallbacks=["cheap"]),
            "local": ollama_provider(local, quality=0.5, expected_latency_ms=300,
                                     timeouts={"first_byte_seconds": 1.0}),
            "offline": {"kind": "openai", "endpoint": closed_port_url() + "/v1", "model": "x", "api_key_secret": "offline-key",
                        "enabled": True},
        },
        "routes": {
            "code": {"candidates": ["premium", "cheap"], "strategy": "quality"},
            "reasoning": {"candidates": ["premium", "cheap"], "strategy": "quality"},
            "default": {"candidates": ["local", "cheap", "premium"]},
        },
        "limits": {"max_body_bytes": 65536, "max_tokens": 4096},
        "cost": {"baseline_provider": "premium"},
    }
    env = {"LLM_ROUTING_CONFIG": json.dumps(doc), "OFFLINE_KEY": "unused", **env_for(cheap, premium)}
    url, stop = start_devhost(env={**env, "LLM_TABLE_CONNECTION": None, "AzureWebJobsStorage": None})
    yield url
    stop()


@pytest.fixture(autouse=True)
def clean_fakes(fakes):
    for f in fakes[1:]:
        f.clear_faults()
        f.chunks, f.chunk_interval, f.latency = 5, 0.0, 0.0
    yield


@pytest.fixture
def client(gateway_url):
    with openai.OpenAI(base_url=f"{gateway_url}/api/v1", api_key="unused-locally", max_retries=0, timeout=20) as c:
        yield c


def raw_chat(client, **kw):
    kw.setdefault("model", "auto")
    kw.setdefault("messages", [{"role": "user", "content": "Hello! How are you today?"}])
    return client.chat.completions.with_raw_response.create(**kw)


def test_routes_by_task_hint_header_and_explains_itself(client, fakes):
    raw = raw_chat(client, extra_headers={"X-Task-Type": "code"})
    completion = raw.parse()
    assert raw.headers["X-LLM-Provider"] == "premium"
    assert raw.headers["X-LLM-Model"] == "gpt-4o"
    assert raw.headers["X-LLM-Task-Type"] == "code"
    assert raw.headers["X-LLM-Strategy"] == "quality"
    assert raw.headers["X-LLM-Attempts"] == "premium:ok"
    assert completion.choices[0].message.content.startswith("[premium]")
    body = json.loads(raw.http_response.text)
    assert body["route"]["provider"] == "premium" and body["route"]["task_source"] == "hint"


def test_task_hint_in_the_body(client):
    raw = raw_chat(client, extra_body={"task_type": "summarization"})
    assert raw.headers["X-LLM-Task-Type"] == "summarization"
    assert raw.headers["X-LLM-Provider"] == "local"


def test_detected_code_prompt_goes_premium(client):
    raw = raw_chat(client, messages=[{"role": "user", "content":
        "Write a Python function `def merge(a, b):` that merges two sorted lists and returns the result.\n```python\ndef merge(a, b):\n    pass\n```"}])
    assert raw.headers["X-LLM-Task-Type"] == "code"
    assert raw.headers["X-LLM-Provider"] == "premium"


@pytest.mark.parametrize("strategy,first", [("cost", "local"), ("quality", "premium")])
def test_strategy_header(client, strategy, first):
    raw = raw_chat(client, extra_headers={"X-Routing-Strategy": strategy, "X-Task-Type": "qa"})
    assert raw.headers["X-LLM-Strategy"] == strategy
    assert raw.headers["X-LLM-Provider"] == first


def test_latency_strategy_prefers_the_fastest_observed(client, fakes):
    fakes[3].latency = 0.25  # local is now slow; every other provider answers at once
    for _ in range(12):
        raw_chat(client, model="local")
    raw = raw_chat(client, extra_headers={"X-Routing-Strategy": "latency", "X-Task-Type": "qa"})
    assert raw.headers["X-LLM-Strategy"] == "latency"
    assert raw.headers["X-LLM-Provider"] != "local"


def test_failover_is_invisible_and_reported(client, fakes):
    fakes[3].fail_next(1, status=503)
    raw = raw_chat(client, extra_headers={"X-Task-Type": "qa"})
    assert raw.parse().choices[0].message.content.startswith("[cheap]")
    assert raw.headers["X-LLM-Attempts"].startswith("local:failed(http_status 503), cheap:ok")


def test_cost_header_from_reported_usage(client):
    raw = raw_chat(client, model="cheap")
    usage = raw.parse().usage
    expected = (CHEAP_PRICE[0] * usage.prompt_tokens + CHEAP_PRICE[1] * usage.completion_tokens) / 1000
    assert float(raw.headers["X-LLM-Cost-USD"]) == pytest.approx(expected, abs=1e-8)
    assert raw.headers["X-LLM-Cost-Estimated"] == "false"


def test_all_candidates_failing_is_503_with_attempts(client, fakes):
    for f in fakes[1:]:
        f.set_fault(Fault.error(500))
    with pytest.raises(openai.InternalServerError) as info:
        raw_chat(client, extra_headers={"X-Task-Type": "qa"})
    err = info.value
    assert err.status_code == 503
    assert err.body["code"] == "all_providers_failed"
    assert "local:failed" in err.response.headers["X-LLM-Attempts"]


# -- bad input: the right 4xx, an OpenAI error body, the SDK's matching exception ----------


@pytest.mark.parametrize("kwargs,exc,code,param", [
    (dict(messages=[]), openai.BadRequestError, "empty_messages", "messages"),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), openai.BadRequestError, "invalid_role", "messages[0].role"),
    (dict(messages=[{"role": "user", "content": 42}]), openai.BadRequestError, "invalid_request", "messages[0].content"),
    (dict(model="gpt-9"), openai.NotFoundError, "model_not_found", "model"),
    (dict(extra_headers={"X-Task-Type": "poetry"}), openai.BadRequestError, "invalid_task_type", "X-Task-Type"),
    (dict(extra_body={"task_type": "poetry"}), openai.BadRequestError, "invalid_task_type", "task_type"),
    (dict(extra_headers={"X-Routing-Strategy": "cheapest"}), openai.BadRequestError, "invalid_strategy", "X-Routing-Strategy"),
    (dict(temperature=7), openai.BadRequestError, "invalid_request", "temperature"),
    (dict(max_tokens=999999), openai.BadRequestError, "max_tokens_too_large", "max_tokens"),
])
def test_bad_requests_get_openai_errors(client, fakes, kwargs, exc, code, param):
    calls = sum(f.call_count for f in fakes[1:])
    with pytest.raises(exc) as info:
        raw_chat(client, **kwargs)
    assert info.value.body["code"] == code
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"
    assert sum(f.call_count for f in fakes[1:]) == calls  # no provider was called


def test_missing_messages_and_malformed_json(gateway_url):
    url = f"{gateway_url}/api/v1/chat/completions"
    r = httpx.post(url, content=b'{"model": "auto", "messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(url, json={"model": "auto"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(url, json=["not", "an", "object"])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    assert "Traceback" not in r.text


def test_oversized_body_is_413_before_any_provider_call(client, fakes):
    calls = sum(f.call_count for f in fakes[1:])
    with pytest.raises(openai.APIStatusError) as info:
        raw_chat(client, messages=[{"role": "user", "content": "x" * 70000}])
    assert info.value.status_code == 413
    assert info.value.body["code"] == "request_too_large"
    assert sum(f.call_count for f in fakes[1:]) == calls


def test_every_value_a_caller_sent_reaches_the_provider_exactly(gateway_url, fakes):
    # Integers beyond 64 bits and lone surrogates are valid JSON that the fast encoder refuses.
    body = ('{"model": "cheap", "messages": [{"role": "user", "content": "hi \\ud83d there"}],'
            ' "seed": 123456789012345678901234567890, "metadata": {"tag": "\\udc00"}}')
    resp = httpx.post(f"{gateway_url}/api/v1/chat/completions", content=body,
                      headers={"Content-Type": "application/json"}, timeout=20)
    assert resp.status_code == 200, resp.text
    sent = fakes[1].chat_calls[-1].body
    assert sent["seed"] == 123456789012345678901234567890
    assert sent["metadata"] == {"tag": "\udc00"}
    assert sent["messages"][0]["content"] == "hi \ud83d there"


def test_provider_caller_error_passes_through(client, fakes):
    fakes[3].fail_next(1, status=400, body={"error": {"message": "context too long", "type": "invalid_request_error",
                                                      "param": "messages", "code": "context_length_exceeded"}})
    with pytest.raises(openai.BadRequestError) as info:
        raw_chat(client, extra_headers={"X-Task-Type": "qa"})
    assert info.value.body["code"] == "context_length_exceeded"


# -- the other endpoints ---------------------------------------------------------------------


def test_route_endpoint_decides_without_calling_providers(gateway_url, fakes):
    calls = sum(f.call_count for f in fakes[1:])
    r = httpx.post(f"{gateway_url}/api/v1/route", json={"messages": [{"role": "user", "content": "hi"}]},
                   headers={"X-Task-Type": "reasoning"})
    assert r.status_code == 200
    route = r.json()["route"]
    assert route["task_type"] == "reasoning" and route["candidates"] == ["premium", "cheap"]
    assert route["provider"] == "premium" and r.headers["X-LLM-Provider"] == "premium"
    assert sum(f.call_count for f in fakes[1:]) == calls


def test_models_routes_health_and_breakers(client, gateway_url):
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "auto" and {"code", "default", "cheap", "premium", "local"} <= set(ids)
    routes = httpx.get(f"{gateway_url}/api/routing/routes").json()
    assert routes["providers"]["cheap"]["api_key_secret"] == "cheap-key"
    assert "k-cheap" not in json.dumps(routes)
    assert routes["task_routes"]["code"] == "code" and routes["task_routes"]["chat"] == "default"
    health = httpx.get(f"{gateway_url}/api/health?deep=true").json()
    assert health["config"]["status"] == "loaded"
    assert health["providers"]["offline"]["reachable"]["ok"] is False
    assert "refused" in health["providers"]["offline"]["reachable"]["error"].lower()
    assert health["providers"]["cheap"]["reachable"]["ok"] is True
    assert "k-cheap" not in json.dumps(health)
    breakers = httpx.get(f"{gateway_url}/api/routing/breakers").json()["breakers"]
    assert isinstance(breakers, list)


def test_isolate_and_reset_a_breaker(client, gateway_url):
    r = httpx.post(f"{gateway_url}/api/routing/breakers/local/isolate")
    assert r.status_code == 200
    raw = raw_chat(client, extra_headers={"X-Task-Type": "qa"})
    assert raw.headers["X-LLM-Provider"] == "cheap"
    assert raw.headers["X-LLM-Attempts"].startswith("local:skipped")
    assert httpx.post(f"{gateway_url}/api/routing/breakers/local/reset").status_code == 200
    assert raw_chat(client, extra_headers={"X-Task-Type": "qa"}).headers["X-LLM-Provider"] == "local"
    r = httpx.post(f"{gateway_url}/api/routing/breakers/nobody/reset")
    assert r.status_code == 404 and r.json()["error"]["code"] == "provider_not_found"


def test_unknown_path_and_method(gateway_url):
    r = httpx.get(f"{gateway_url}/api/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{gateway_url}/api/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


# -- streaming ---------------------------------------------------------------------------------


def test_stream_arrives_incrementally_and_complete(client, fakes):
    cheap = fakes[1]
    cheap.chunks, cheap.chunk_interval = 8, 0.05
    cheap.reset_records()
    stream = client.chat.completions.create(model="cheap", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "one two three four five six seven eight"}])
    received = []
    for chunk in stream:
        received.append((time.monotonic(), chunk))
    call = cheap.chat_calls[-1]
    first_content = next(t for t, c in received if c.choices and c.choices[0].delta.content)
    assert first_content < call.chunk_times[-1], "the first chunk must arrive before the fake sent its last"
    text = "".join(c.choices[0].delta.content or "" for _, c in received if c.choices)
    assert text == "[cheap] one two three four five six seven eight"
    usage_chunk = received[-1][1]
    assert usage_chunk.usage.completion_tokens > 0 and not usage_chunk.choices
    assert usage_chunk.model_extra["x_llm"]["cost_usd"] > 0


def test_stream_headers_carry_the_route(client, fakes):
    fakes[3].fail_next(1, status=503)
    with client.chat.completions.with_streaming_response.create(
            model="auto", stream=True, extra_headers={"X-Task-Type": "qa"},
            messages=[{"role": "user", "content": "hello"}]) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["X-LLM-Provider"] == "cheap"
        assert resp.headers["X-LLM-Attempts"].startswith("local:failed")
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text.startswith("[cheap]")


@pytest.mark.parametrize("fault", [Fault.error(503), Fault.error_first_event("overloaded"), Fault.reset(),
                                   Fault.slow_headers(3.0)])
def test_stream_failure_before_first_token_is_invisible(client, fakes, fault):
    fakes[3].inject(fault)
    stream = client.chat.completions.create(model="auto", stream=True, extra_headers={"X-Task-Type": "qa"},
                                            messages=[{"role": "user", "content": "hello"}], timeout=30)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("[cheap]")


def test_stream_failure_after_commit_ends_with_error_then_done(gateway_url, fakes):
    fakes[1].inject(Fault.reset_mid_body(after_chunks=2))
    with httpx.stream("POST", f"{gateway_url}/api/v1/chat/completions",
                      json={"model": "cheap", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2][6:])
    assert error["error"]["code"] == "stream_interrupted"
    assert any('"content"' in e for e in events[:-2])


def test_stream_error_event_raises_in_the_sdk(client, fakes):
    fakes[1].inject(Fault.reset_mid_body(after_chunks=2))
    stream = client.chat.completions.create(model="cheap", stream=True, messages=[{"role": "user", "content": "a b c"}])
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_client_disconnect_cancels_upstream(gateway_url, fakes):
    thread, cheap = fakes[0], fakes[1]
    cheap.chunks, cheap.chunk_interval = 100, 0.02
    cheap.reset_records()
    with httpx.stream("POST", f"{gateway_url}/api/v1/chat/completions",
                      json={"model": "cheap", "stream": True, "messages": [{"role": "user", "content": "long story"}]}) as r:
        for line in r.iter_lines():
            if '"content"' in line:
                break
        disconnected = time.monotonic()
    thread.run(cheap.wait_until(lambda: cheap.streams_cancelled == 1, timeout=3.0))
    assert cheap.chat_calls[-1].cancelled_at - disconnected < 1.0
    assert cheap.chat_calls[-1].outcome == "cancelled"


def test_fields_ollama_cannot_honour_are_named_in_a_header(client, gateway_url):
    for name in ("local", "cheap"):  # earlier tests' faults may have opened them
        httpx.post(f"{gateway_url}/api/routing/breakers/{name}/reset")
    raw = raw_chat(client, model="local", extra_body={"tools": [{"type": "function", "function": {"name": "f"}}]})
    assert raw.headers["X-LLM-Provider"] == "local"
    assert raw.headers["X-LLM-Ignored-Params"] == "tools"
    assert "X-LLM-Ignored-Params" not in raw_chat(client, model="cheap").headers
