"""The fake LLM speaks each real wire protocol, and its faults behave."""

from __future__ import annotations

import json
import time

import aiohttp
import openai
import pytest

from tests.fakes.llm import FakeLLM, FakeLLMThread, Fault, GarbageServer, closed_port_url

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there from the test suite"},
]
REPLY = "[primary] hello there from the test suite"


@pytest.fixture
async def fake():
    async with FakeLLM("primary", api_key="k1", models=["gpt-4o-mini", "llama3"]) as f:
        yield f


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


def oai(fake: FakeLLM, key: str = "k1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key=key, max_retries=0, timeout=5)


def azure(fake: FakeLLM, **auth: str) -> openai.AsyncAzureOpenAI:
    auth = auth or {"api_key": "k1"}
    return openai.AsyncAzureOpenAI(
        azure_endpoint=fake.azure_endpoint, api_version="2024-10-21", max_retries=0, timeout=5, **auth
    )


def sse_events(raw: bytes) -> list[str]:
    return [e.removeprefix("data: ") for e in raw.decode().split("\n\n") if e]


# ---------------------------------------------------------------- OpenAI
async def test_openai_completion_is_deterministic_and_recorded(fake):
    async with oai(fake) as client:
        got = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert got.object == "chat.completion"
    assert got.model == "gpt-4o-mini"
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == REPLY
    assert got.choices[0].finish_reason == "stop"
    assert got.usage.completion_tokens == len(REPLY) // 4 + 1
    assert got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens
    call = fake.calls[0]
    assert (call.path, call.protocol, call.stream, call.status) == ("/v1/chat/completions", "openai", False, 200)
    assert call.headers["authorization"] == "Bearer k1"
    assert call.body["messages"] == MESSAGES


async def test_openai_stream_with_usage(fake):
    async with oai(fake) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]

    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    content = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(content) == 5 and "".join(content) == REPLY
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert (fake.streams_started, fake.streams_completed, fake.streams_cancelled) == (1, 1, 0)
    assert fake.chunks_sent == 1 + 5 + 1 + 1 + 1  # role, content, stop, usage, [DONE]


async def test_openai_wrong_model_and_key_rotation(fake):
    async with oai(fake) as client:
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(model="nope", messages=MESSAGES)
        assert err.value.code == "model_not_found"

        fake.api_key = "k2"
        with pytest.raises(openai.AuthenticationError) as err:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert err.value.code == "invalid_api_key"
    async with oai(fake, key="k2") as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


# ----------------------------------------------------------------- Azure
async def test_azure_completion_and_stream_quirks(fake):
    async with azure(fake) as client:
        got = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]

    assert got.choices[0].message.content == REPLY
    assert got.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert chunks[0].choices == [] and "prompt_filter_results" in chunks[0].model_extra
    assert chunks[1].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks[1:]) == REPLY
    assert chunks[2].choices[0].model_extra["content_filter_results"]["hate"]["filtered"] is False
    assert chunks[-1].choices[0].finish_reason == "stop"
    call = fake.calls[0]
    assert call.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert call.query["api-version"] == "2024-10-21" and call.headers["api-key"] == "k1"


async def test_azure_entra_token_and_rejections(fake, http):
    async with azure(fake, azure_ad_token="entra-token") as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(model="other-deployment", messages=MESSAGES)
        assert err.value.code == "DeploymentNotFound"
    async with azure(fake, api_key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    url = f"{fake.azure_endpoint}/openai/deployments/gpt-4o-mini/chat/completions"
    async with http.post(url, json={"messages": MESSAGES}, headers={"api-key": "k1"}) as r:
        assert r.status == 400 and "api-version" in (await r.json())["error"]["message"]


# ---------------------------------------------------------------- Ollama
async def test_ollama_streams_ndjson_by_default(fake, http):
    url = f"{fake.ollama_endpoint}/api/chat"
    async with http.post(url, json={"model": "llama3", "messages": MESSAGES}) as r:
        assert r.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await r.read()).splitlines()]
    assert [x["done"] for x in lines] == [False] * 5 + [True]
    assert "".join(x["message"]["content"] for x in lines) == REPLY
    last = lines[-1]
    assert last["done_reason"] == "stop" and last["eval_count"] > 0 and last["prompt_eval_count"] > 0
    assert {"model", "created_at", "total_duration"} <= last.keys()

    async with http.post(url, json={"model": "llama3", "messages": MESSAGES, "stream": False}) as r:
        one = await r.json()
    assert one["done"] is True and one["message"] == {"role": "assistant", "content": REPLY}

    async with http.post(url, json={"model": "mistral", "messages": MESSAGES}) as r:
        assert r.status == 404 and await r.json() == {"error": "model 'mistral' not found"}
    async with http.get(f"{fake.ollama_endpoint}/api/tags") as r:
        assert [m["name"] for m in (await r.json())["models"]] == ["gpt-4o-mini", "llama3"]


# ---------------------------------------------------------------- faults
async def test_fail_next_429_with_retry_after_then_recovers(fake):
    fake.fail_next(1, status=429, retry_after=30)
    async with oai(fake) as client:
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert err.value.response.headers["retry-after"] == "30"
        assert err.value.code == "rate_limit_exceeded"
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake.call_count == 2 and fake.calls[0].fault.status == 429 and fake.calls[1].fault is None


async def test_persistent_fault_until_cleared_and_where(fake, http):
    fake.set_fault(Fault.error(503).where(lambda call: call.protocol == "ollama"))
    url = f"{fake.ollama_endpoint}/api/chat"
    body = {"model": "llama3", "messages": MESSAGES, "stream": False}
    for _ in range(2):
        async with http.post(url, json=body) as r:
            assert r.status == 503 and "error" in await r.json()
    async with oai(fake) as client:  # the fault is narrowed to Ollama
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    fake.clear_faults()
    async with http.post(url, json=body) as r:
        assert r.status == 200


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
async def test_reset_mid_stream_after_n_chunks(fake, http, protocol):
    fake.inject(Fault.reset_mid_body(after_chunks=2))
    if protocol == "openai":
        url, headers = f"{fake.openai_base_url}/chat/completions", {"Authorization": "Bearer k1"}
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    else:
        url, headers, body = f"{fake.ollama_endpoint}/api/chat", {}, {"model": "llama3", "messages": MESSAGES}
    received: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, json=body, headers=headers) as r:
            assert r.status == 200
            async for line in r.content:
                if line.strip():
                    received.append(line)
    assert len(received) == (1 + 2 if protocol == "openai" else 2)  # role chunk + 2 content chunks
    assert fake.calls[0].outcome == "aborted" and fake.streams_completed == 0


async def test_first_event_error_openai_and_ollama(fake, http):
    fake.inject(Fault.error_first_event("overloaded"))
    async with oai(fake) as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="overloaded"):
            async for _ in stream:
                pass

    fake.inject(Fault.error_first_event("model crashed"))
    async with http.post(f"{fake.ollama_endpoint}/api/chat", json={"model": "llama3", "messages": MESSAGES}) as r:
        assert r.status == 200 and (await r.read()).splitlines() == [b'{"error":"model crashed"}']


async def test_client_disconnect_is_counted_mid_stream(http):
    async with FakeLLM("slow", chunks=50, chunk_interval=0.01) as fake:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        headers = {"Authorization": "Bearer test-key"}
        async with http.post(f"{fake.openai_base_url}/chat/completions", json=body, headers=headers) as r:
            await r.content.readline()  # the role chunk
            sent_at_first = fake.chunks_sent
            r.close()
        await fake.wait_until(lambda: fake.streams_cancelled == 1)
        call = fake.calls[0]
        assert call.outcome == "cancelled" and fake.cancel_times == [call.cancelled_at]
        assert sent_at_first < 10 and fake.chunks_sent == len(call.chunk_times) < 50


async def test_stall_is_bounded_and_malformed_payloads(fake, http):
    url, headers = f"{fake.openai_base_url}/chat/completions", {"Authorization": "Bearer k1"}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    fake.inject(Fault.stall(after_chunks=1, max_stall=0.2))
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, json=body, headers=headers) as r:
            await r.read()
    assert 0.2 <= time.monotonic() - started < 2

    fake.inject(Fault.malformed_chunk(after_chunks=1))
    async with http.post(url, json=body, headers=headers) as r:
        events = sse_events(await r.read())
    with pytest.raises(ValueError):
        json.loads(events[2])
    assert events[-1] == "[DONE]"

    fake.inject(Fault.malformed_json())
    async with http.post(url, json=dict(body, stream=False), headers=headers) as r:
        assert r.status == 200
        with pytest.raises(ValueError):
            json.loads(await r.read())

    fake.inject(Fault.huge(3_000_000))
    async with http.post(url, json=dict(body, stream=False), headers=headers) as r:
        assert len((await r.json())["choices"][0]["message"]["content"]) == 3_000_000


async def test_unreachable_and_garbage_servers(http):
    with pytest.raises(aiohttp.ClientConnectorError):
        await http.get(closed_port_url())
    async with GarbageServer() as garbage:
        with pytest.raises(aiohttp.ClientResponseError):
            await http.post(f"{garbage.url}/v1/chat/completions", json={})
    assert garbage.connections == 1


def test_thread_runner_serves_the_sync_client():
    with FakeLLMThread(FakeLLM("a", chunks=3), FakeLLM("b", api_key="kb")) as (a, b):
        a.fail_next(1, status=500)
        client = openai.OpenAI(base_url=a.openai_base_url, api_key=a.api_key, max_retries=0, timeout=5)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        got = client.chat.completions.create(model="m", messages=MESSAGES)
        client.close()
        stream = openai.OpenAI(base_url=b.openai_base_url, api_key="kb", max_retries=0, timeout=5)
        text = "".join(c.choices[0].delta.content or "" for c in stream.chat.completions.create(
            model="m", messages=MESSAGES, stream=True))
        stream.close()
    assert got.choices[0].message.content == "[a] hello there from the test suite"
    assert text == "[b] hello there from the test suite"
    assert a.call_count == 2 and [c.status for c in a.calls] == [500, 200]
