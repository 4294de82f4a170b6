"""The routing provider through its Python API, against wire-level fake providers."""

from __future__ import annotations

import asyncio
import contextlib
import json


import pytest

from shared.errors import AllProvidersFailed, InvalidRequest, NotFound, UpstreamRejected
from shared.providers.base import ChatProvider, ChatRequest
from shared.routing.streaming import StreamInterrupted
from tests.fakes.llm import FakeLLM, Fault, closed_port_url
from tests.gateway_helpers import azure_provider, env_for, make_gateway, ollama_provider, openai_provider


def ask(text="Hello there, how are you today?", **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


@pytest.fixture
async def fakes():
    cheap, premium, local = FakeLLM("cheap", api_key="k-cheap"), FakeLLM("premium", api_key="k-prem"), FakeLLM("local")
    for f in (cheap, premium, local):
        await f.start()
    yield cheap, premium, local
    for f in (cheap, premium, local):
        await f.stop()


@pytest.fixture
async def gateway(fakes):
    cheap, premium, local = fakes
    doc = {
        "providers": {
            "cheap": openai_provider(cheap, "mini", price=(0.00015, 0.0006), quality=0.7, expected_latency_ms=900),
            "premium": azure_provider(premium, "gpt-4o", price=(0.0025, 0.01), quality=0.92,
                                      expected_latency_ms=1500, fallbacks=["cheap"]),
            "local": ollama_provider(local, quality=0.5, expected_latency_ms=300),
        },
        "routes": {
            "code": {"candidates": ["premium", "cheap"], "strategy": "quality"},
            "reasoning": {"candidates": ["premium", "cheap"], "strategy": "quality"},
            "default": {"candidates": ["local", "cheap", "premium"]},
        },
    }
    gw = make_gateway(doc, env_for(cheap, premium))
    await gw.start()
    yield gw
    await gw.close()


async def test_router_implements_the_provider_protocol(gateway):
    assert isinstance(gateway.router, ChatProvider)
    for p in gateway.providers.values():
        assert isinstance(p, ChatProvider)


async def test_simple_work_goes_to_the_free_local_model(gateway, fakes):
    result = await gateway.router.complete(ask(task_type="summarization"))
    assert result["route"]["provider"] == "local"
    assert result["route"]["candidates"] == ["local", "cheap", "premium"]
    assert result["choices"][0]["message"]["content"].startswith("[local]")
    assert fakes[2].chat_calls and not fakes[0].chat_calls


async def test_code_goes_to_the_premium_model(gateway, fakes):
    result = await gateway.router.complete(ask("Write a Python function that reverses a linked list.", task_type="code"))
    assert result["route"]["provider"] == "premium"
    assert result["route"]["task_type"] == "code"
    assert result["route"]["strategy"] == "quality"
    call = fakes[1].chat_calls[-1]
    assert call.protocol == "azure" and call.headers["api-key"] == "k-prem"
    assert "model" not in call.body  # Azure takes the deployment from the URL


@pytest.mark.parametrize("strategy,first", [("cost", "local"), ("quality", "premium"), ("latency", "local")])
async def test_each_strategy_orders_candidates(gateway, strategy, first):
    result = await gateway.router.complete(ask(task_type="qa", strategy=strategy))
    assert result["route"]["strategy"] == strategy
    assert result["route"]["candidates"][0] == first
    assert result["route"]["provider"] == first


async def test_latency_strategy_uses_observed_latency(gateway, fakes):
    cheap, premium, local = fakes
    local.latency = 0.15
    for _ in range(3):
        await gateway.router.complete(ask(task_type="qa", model="local"))
        await gateway.router.complete(ask(task_type="qa", model="cheap"))
    result = await gateway.router.complete(ask(task_type="qa", strategy="latency"))
    assert result["route"]["candidates"][0] == "cheap"  # observed faster than the slowed local model


async def test_failover_to_next_candidate_is_invisible(gateway, fakes):
    fakes[2].fail_next(1, status=503)
    result = await gateway.router.complete(ask(task_type="qa"))
    assert result["route"]["provider"] == "cheap"
    attempts = result["route"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "ok"]
    assert attempts[0]["status"] == 503


@pytest.mark.parametrize("fault", [Fault.error(500), Fault.error(429), Fault.error(408), Fault.reset(), Fault.malformed_json()])
async def test_retryable_failures_move_on(gateway, fakes, fault):
    fakes[2].inject(fault)
    result = await gateway.router.complete(ask(task_type="qa"))
    assert result["route"]["provider"] == "cheap"


async def test_connection_refused_moves_on(fakes):
    cheap = fakes[0]
    gw = make_gateway({
        "providers": {
            "down": {"kind": "openai", "endpoint": closed_port_url() + "/v1", "model": "x", "api_key_secret": "down-key",
                     "price": {"input_per_1k": 0, "output_per_1k": 0}},
            "cheap": openai_provider(cheap, "mini"),
        },
        "routes": {"default": {"candidates": ["down", "cheap"], "strategy": "cost"}},
    }, {"DOWN_KEY": "x", **env_for(cheap)})
    try:
        result = await gw.router.complete(ask())
        assert result["route"]["provider"] == "cheap"
        assert result["route"]["attempts"][0]["reason"].startswith("connect_error")
    finally:
        await gw.close()


async def test_caller_errors_from_a_provider_pass_through(gateway, fakes):
    fakes[2].fail_next(1, status=400, body={"error": {"message": "bad sampling value", "type": "invalid_request_error",
                                                      "param": "temperature", "code": "bad_value"}})
    with pytest.raises(UpstreamRejected) as info:
        await gateway.router.complete(ask(task_type="qa"))
    assert info.value.status == 400
    assert info.value.param == "temperature"
    assert "bad sampling value" in info.value.message
    assert not fakes[0].chat_calls  # no failover for the caller's own error


async def test_all_failed_is_503_with_attempts_and_retry_after(gateway, fakes):
    for f in fakes:
        f.set_fault(Fault.error(429, retry_after=7))
    with pytest.raises(AllProvidersFailed) as info:
        await gateway.router.complete(ask(task_type="qa"))
    err = info.value
    assert err.status == 503
    assert [a["provider"] for a in err.extra["route"]["attempts"]] == ["local", "cheap", "premium"]
    assert err.headers["Retry-After"] == "7"


async def test_unknown_model_and_bad_hints_are_client_errors(gateway):
    with pytest.raises(NotFound) as nf:
        gateway.router.decide(ask(model="gpt-9"))
    assert nf.value.code == "model_not_found"
    with pytest.raises(InvalidRequest) as bad:
        gateway.router.decide(ask(task_type="poetry"))
    assert "valid task types" in bad.value.message and "summarization" in bad.value.message
    with pytest.raises(InvalidRequest) as bad_s:
        gateway.router.decide(ask(strategy="cheapest"))
    assert "cost, quality, latency" in bad_s.value.message


async def test_model_pins_a_provider_with_its_fallbacks(gateway, fakes):
    fakes[1].fail_next(1, status=502)
    result = await gateway.router.complete(ask(model="premium"))
    assert result["route"]["candidates"] == ["premium", "cheap"]
    assert result["route"]["provider"] == "cheap"


async def test_model_names_a_route(gateway):
    result = await gateway.router.complete(ask("hi", model="code"))
    assert result["route"]["route"] == "code"
    assert result["route"]["provider"] == "premium"


async def test_cost_comes_from_reported_usage_and_price(gateway):
    result = await gateway.router.complete(ask(model="cheap"))
    usage = result["usage"]
    expected = (0.00015 * usage["prompt_tokens"] + 0.0006 * usage["completion_tokens"]) / 1000
    assert result["route"]["cost_usd"] == pytest.approx(expected, abs=1e-8)
    assert result["route"]["cost_estimated"] is False


class CachingSecrets:
    """A secret store that caches until asked to refresh (as the Key Vault provider does)."""

    def __init__(self, source: dict[str, str]) -> None:
        self.source, self.cache, self.refreshes = source, {}, 0

    async def get(self, name):
        key = name.upper().replace("-", "_")
        if key not in self.cache:
            self.cache[key] = self.source[key]
        return self.cache[key]

    async def refresh(self, name):
        self.refreshes += 1
        self.cache.pop(name.upper().replace("-", "_"), None)
        return await self.get(name)


async def test_key_rotation_rereads_the_secret_and_carries_on(fakes):
    cheap = fakes[0]
    env = env_for(cheap)
    gw = make_gateway({"providers": {"cheap": openai_provider(cheap, "mini")},
                       "routes": {"default": {"candidates": ["cheap"]}}}, env)
    store = CachingSecrets(env)
    gw.providers["cheap"].auth.secrets = store
    try:
        assert (await gw.router.complete(ask()))["route"]["provider"] == "cheap"
        cheap.api_key = "rotated"
        env["CHEAP_KEY"] = "rotated"  # the store now holds the new value
        result = await gw.router.complete(ask())
        assert result["route"]["provider"] == "cheap"
        statuses = [c.status for c in cheap.chat_calls]
        assert statuses[-2:] == [401, 200]
        assert store.refreshes == 1
        breaker = {b["provider"]: b for b in await gw.breakers.status()}["cheap"]
        assert breaker["failures"] == 0 and breaker["consecutive_failures"] == 0
    finally:
        await gw.close()


async def test_unresolved_secret_fails_closed(fakes):
    cheap, premium, _ = fakes
    gw = make_gateway({"providers": {"cheap": openai_provider(cheap, "mini"), "premium": azure_provider(premium, "gpt-4o")},
                       "routes": {"default": {"candidates": ["cheap", "premium"], "strategy": "cost"}}},
                      {"CHEAP_KEY": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/x/)", **env_for(premium)})
    try:
        result = await gw.router.complete(ask())
        assert result["route"]["provider"] == "premium"
        skipped = result["route"]["attempts"][0]
        assert skipped["outcome"] == "skipped" and "cheap-key" in skipped["reason"]
        assert not cheap.chat_calls  # never called with a placeholder key
    finally:
        await gw.close()


# -- streaming -----------------------------------------------------------------------


async def collect(stream):
    return [c async for c in stream]


def text_of(chunks):
    return "".join((ch.get("delta") or {}).get("content") or "" for c in chunks for ch in c.get("choices") or [])


@contextlib.asynccontextmanager
async def gateway_on_raw_sse(chat):
    """A gateway whose one OpenAI-kind provider is `chat`, an aiohttp handler writing raw bytes."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        doc = {"providers": {"raw": {"kind": "openai", "endpoint": f"http://127.0.0.1:{port}/v1", "model": "m",
                                     "api_key_secret": "raw-key",
                                     "price": {"input_per_1k": 0.001, "output_per_1k": 0.002}}},
               "routes": {"default": {"candidates": ["raw"]}}}
        gw = make_gateway(doc, {"RAW_KEY": "k"})
        await gw.start()
        try:
            yield gw
        finally:
            await gw.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("provider", ["local", "cheap", "premium"])
async def test_stream_from_each_provider_kind(gateway, provider):
    chunks = await collect(gateway.router.stream(ask("Tell me a short story please", model=provider, stream=True,
                                                     include_usage=True)))
    assert text_of(chunks).startswith(f"[{provider}]")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert "cost_usd" in chunks[-1]["x_llm"]


async def test_stream_without_include_usage_hides_usage_but_records_it(gateway):
    chunks = await collect(gateway.router.stream(ask(model="cheap", stream=True)))
    assert all("usage" not in c for c in chunks)
    assert text_of(chunks)


@pytest.mark.parametrize("fault", [Fault.error(503), Fault.error_first_event("overloaded"), Fault.reset(),
                                   Fault.reset_mid_body(after_chunks=0)])
async def test_stream_fails_over_before_the_first_token(gateway, fakes, fault):
    fakes[2].inject(fault)
    routed = await gateway.router.open_stream(ask(task_type="qa", stream=True))
    assert routed.provider == "cheap"
    assert [a["outcome"] for a in routed.route()["attempts"]] == ["failed", "ok"]
    chunks = await collect(routed)
    assert text_of(chunks).startswith("[cheap]")


async def test_stream_broken_after_commit_raises_interrupted(gateway, fakes):
    fakes[0].inject(Fault.reset_mid_body(after_chunks=2))
    routed = await gateway.router.open_stream(ask(model="cheap", stream=True))
    got = []
    with pytest.raises(StreamInterrupted):
        async for c in routed:
            got.append(c)
    assert text_of(got)  # the partial answer arrived before the error
    breaker = {b["provider"]: b for b in await gateway.breakers.status()}["cheap"]
    assert breaker["failures"] + breaker.get("pending_failures", 0) >= 1 or breaker["consecutive_failures"] >= 1


async def test_a_slow_caller_is_not_a_stalled_provider(fakes):
    cheap = fakes[0]
    gw = make_gateway({"providers": {"cheap": openai_provider(cheap, "mini", timeouts={"stream_idle_seconds": 0.2})},
                       "routes": {"default": {"candidates": ["cheap"]}}}, env_for(cheap))
    cheap.chunk_interval = 0.05  # chunks arrive one by one, each well within the idle timeout
    try:
        routed = await gw.router.open_stream(ask(stream=True))
        texts = []
        async for chunk in routed:
            texts.extend((c.get("delta") or {}).get("content") or "" for c in chunk["choices"])
            if len(texts) == 2:
                await asyncio.sleep(0.5)  # the caller dawdles well past the provider's idle timeout
        await routed.aclose()
        whole = await gw.router.complete(ask())
        assert "".join(texts) == whole["choices"][0]["message"]["content"]
        assert [a.outcome for a in routed.attempts] == ["ok"]
    finally:
        await gw.close()


async def test_stream_stall_after_commit_is_an_error(fakes):
    cheap = fakes[0]
    gw = make_gateway({"providers": {"cheap": openai_provider(cheap, "mini", timeouts={"stream_idle_seconds": 0.2})},
                       "routes": {"default": {"candidates": ["cheap"]}}}, env_for(cheap))
    cheap.inject(Fault.stall(after_chunks=1, max_stall=3))
    try:
        routed = await gw.router.open_stream(ask(stream=True))
        with pytest.raises(StreamInterrupted) as info:
            await collect(routed)
        assert "stalled" in info.value.message
    finally:
        await gw.close()


async def test_abandoned_stream_cancels_upstream(gateway, fakes):
    cheap = fakes[0]
    cheap.chunks, cheap.chunk_interval = 50, 0.02
    routed = await gateway.router.open_stream(ask(model="cheap", stream=True))
    it = routed.__aiter__()
    await anext(it)
    await it.aclose()
    await cheap.wait_until(lambda: cheap.streams_cancelled == 1, timeout=2.0)
    assert gateway.http.open_connections() <= 1  # released, not leaked (at most one idle keep-alive)


async def test_a_finished_stream_gives_its_connection_back_even_if_the_body_ends_later():
    """The body's end (the chunked terminator) arriving after [DONE], as it can in a later
    TLS record: the connection still goes back to the pool for the next stream."""
    from aiohttp import web

    ports: list[int] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        ports.append(request.transport.get_extra_info("peername")[1])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        body = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
        await resp.write(b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n")
        await asyncio.sleep(0.05)
        await resp.write_eof()
        return resp

    async with gateway_on_raw_sse(chat) as gw:
        for _ in range(3):
            assert text_of(await collect(gw.router.stream(ask(stream=True)))) == "hi"
            await asyncio.sleep(0.2)  # the body's end arrives meanwhile
        assert len(ports) == 3 and len(set(ports)) == 1, f"a new connection per stream: {ports}"
        assert gw.http.open_connections() == 1


async def test_breaker_wrapped_provider_speaks_the_same_protocol(gateway, fakes):
    from shared.providers.guarded import BreakerProvider
    from shared.providers.base import ProviderError

    guarded = BreakerProvider(gateway.providers["cheap"], gateway.breakers)
    assert isinstance(guarded, ChatProvider)
    result = await guarded.complete(ask())
    assert result["choices"][0]["message"]["content"].startswith("[cheap]")
    assert text_of(await collect(guarded.stream(ask(stream=True)))).startswith("[cheap]")
    await gateway.breakers.isolate("cheap")
    with pytest.raises(ProviderError) as info:
        await guarded.complete(ask())
    assert info.value.kind == "unavailable"
    assert not [c for c in fakes[0].chat_calls[2:]]  # no call while isolated


async def test_code_written_for_one_provider_runs_on_the_router(gateway):
    async def summarize(provider: ChatProvider) -> str:
        out = await provider.complete(ask("Summarize this: the sky is blue."))
        return out["choices"][0]["message"]["content"]

    single = await summarize(gateway.providers["cheap"])
    routed = await summarize(gateway.router)
    assert single.startswith("[cheap]") and routed.startswith("[")


@pytest.mark.parametrize("code_score,expected_task,source", [(0.3, "code", "escalated"), (0.1, "qa", "detected")])
async def test_escalation_sends_likely_hard_work_to_its_route(gateway, code_score, expected_task, source):
    from dataclasses import replace

    from shared.routing.detection import Detection
    from shared.routing.planner import Planner
    from shared.routing.strategies import build_strategies
    from shared.routing.latency import LatencyTracker
    from shared.config.model import Escalation

    config = replace(gateway.config, escalation=Escalation(("code", "reasoning"), 0.25))
    fake_detect = lambda messages: Detection("qa", 0.5, "user", {"qa": 0.5, "code": code_score, "reasoning": 0.05})
    decision = Planner(config, build_strategies(LatencyTracker()), detect=fake_detect).plan(ask())
    assert (decision.task_type, decision.task_source) == (expected_task, source)
    assert decision.route == ("code" if expected_task == "code" else "default")


async def test_low_confidence_detections_take_the_designated_route(gateway):
    from dataclasses import replace

    from shared.config.model import LowConfidence
    from shared.routing.detection import Detection
    from shared.routing.latency import LatencyTracker
    from shared.routing.planner import Planner
    from shared.routing.strategies import build_strategies

    config = replace(gateway.config, low_confidence=LowConfidence(0.4, "code"))
    unsure = Planner(config, build_strategies(LatencyTracker()), detect=lambda m: Detection("qa", 0.3, "user", {"qa": 0.3}))
    sure = Planner(config, build_strategies(LatencyTracker()), detect=lambda m: Detection("qa", 0.9, "user", {"qa": 0.9}))
    low = unsure.plan(ask())
    assert low.route == "code" and low.low_confidence and low.to_dict()["low_confidence"] is True
    assert sure.plan(ask()).route == "default"
    assert unsure.plan(ask(task_type="qa")).route == "default"  # a hint is never second-guessed


async def test_fields_a_provider_cannot_honour_are_reported_not_dropped_silently(gateway, fakes):
    request = ask(model="local", params={"temperature": 0.2, "tools": [{"type": "function"}], "logprobs": True})
    result = await gateway.router.complete(request)
    assert result["route"]["ignored_params"] == ["logprobs", "tools"]
    assert fakes[2].chat_calls[-1].body["options"]["temperature"] == 0.2
    routed = await gateway.router.open_stream(ask(model="local", stream=True, params={"tools": []}))
    assert routed.route()["ignored_params"] == ["tools"]
    await routed.aclose()
    passed = await gateway.router.complete(ask(model="cheap", params={"tools": [{"type": "function"}]}))
    assert "ignored_params" not in passed["route"]  # OpenAI kinds receive every field
    assert fakes[0].chat_calls[-1].body["tools"] == [{"type": "function"}]


async def test_sse_with_crlf_line_endings_split_across_reads_streams_whole():
    """Events framed with CRLF, a CR and its LF in different reads, several events in one
    read, an event split mid-JSON: the chunks come out whole and in order."""
    from aiohttp import web

    def event(text: str | None, finish=None, usage=None) -> bytes:
        delta = {} if text is None else {"content": text}
        body = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
                "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            body["usage"] = usage
        return b"data: " + json.dumps(body).encode()

    pieces = [
        event("Hel") + b"\r",
        b"\n\r\n" + event("lo") + b"\r\n\r\n" + event(", wor"),
        b"\r\n\r\n" + event("ld") + b"\r\n",
        b"\r\n" + event(None, "stop") + b"\r\n\r\n" + event(None, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
        b"\r\n\r\ndata: [DONE]\r\n\r\n",
    ]

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    async with gateway_on_raw_sse(chat) as gw:
        chunks = [c async for c in gw.router.stream(ask(stream=True, include_usage=True))]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    assert text == "Hello, world"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_a_request_leaves_no_async_generator_for_the_event_loop_to_finalize(gateway):
    """The walk over the candidates leaves nothing behind when a candidate succeeds. An async
    generator abandoned there would be left to the event loop's finalizer, and each request
    would cost a thread-safe wake-up of the loop (an eventfd write and read) and an extra task."""
    import gc
    import sys

    hooks = sys.get_asyncgen_hooks()
    finalized: list[str] = []

    def finalizer(agen) -> None:
        finalized.append(agen.ag_code.co_qualname)
        hooks.finalizer(agen)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        assert (await gateway.router.complete(ask()))["route"]["provider"]
        text = text_of(await collect(gateway.router.stream(ask(stream=True))))
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert text
    assert finalized == []
