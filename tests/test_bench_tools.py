"""The benchmark's own stand-ins answer correctly, so a benchmark cannot measure a broken setup:
the canned provider (OpenAI wire format, key checked) and the load generator's protocol client."""

from __future__ import annotations

import aiohttp
import pytest

from bench.bench_gateway import RawClient, run_load
from bench.canned_provider import serve

KEY = "bench-test-key"
BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
async def canned():
    server, port = await serve(KEY)
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_canned_provider_answers_openai_completions_and_checks_the_key(canned):
    async with aiohttp.ClientSession() as session:
        async with session.post(canned + "/v1/chat/completions", data=BODY,
                                headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        async with session.post(canned + "/v1/chat/completions", data=BODY,
                                headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["message"]
        async with session.post(canned + "/v1/embeddings", data=BODY,
                                headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert resp.status == 404


async def test_load_client_counts_every_response_on_kept_alive_connections(canned):
    result = await run_load(canned, "/v1/chat/completions", BODY, {"Authorization": f"Bearer {KEY}"},
                            concurrency=3, requests=30, seconds=10)
    assert result["n"] == 30 and result["errors"] == 0
    wrong = await run_load(canned, "/v1/chat/completions", BODY, {"Authorization": "Bearer wrong"},
                           concurrency=2, requests=4, seconds=10)
    assert wrong["n"] == 4 and wrong["errors"] == 4  # a 401 is counted as an error, not a success


async def test_load_client_reports_a_closed_connection_instead_of_waiting(canned):
    client = RawClient(canned, "/v1/chat/completions", BODY, {})
    client.request = b"NOT HTTP\r\n\r\n"  # the provider answers 400 and closes
    await client.connect()
    assert await client.send() == 400
    with pytest.raises(ConnectionError):
        await client.send()
    client.close()
