"""The benchmark's own stand-ins answer correctly, so a benchmark cannot measure a broken setup:
the canned provider (OpenAI wire format, key checked), the floor proxy, the load generator's
protocol client, the stream client's steady window and the interleaving of targets."""

from __future__ import annotations

import time

import aiohttp
import pytest

from bench.bench_gateway import Target, RawClient, interleaved, run_load, run_streams, start_floor
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


async def test_floor_proxy_forwards_completions_and_passes_streams_through(canned):
    proxy, url = start_floor(canned + "/v1", KEY)
    try:
        result = await run_load(url, "/v1/chat/completions", BODY, {}, concurrency=2, requests=6, seconds=10)
        assert result["n"] == 6 and result["errors"] == 0  # the canned provider accepted the key it sent
    finally:
        proxy.terminate()
        proxy.wait(5)
    server, port = await serve(KEY, chunks=4, interval=0.01)
    async with server:
        proxy, url = start_floor(f"http://127.0.0.1:{port}/v1", KEY)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(url + "/v1/chat/completions", data=BODY.replace(b"}]}", b"}], \"stream\": true}")) as resp:
                    assert resp.headers["Content-Type"].startswith("text/event-stream")
                    lines = [line async for line in resp.content if line.strip()]
            assert lines[-1].strip() == b"data: [DONE]"
            assert sum(b'"content"' in line for line in lines) >= 4
        finally:
            proxy.terminate()
            proxy.wait(5)


async def test_canned_provider_streams_openai_chunks_paced_with_usage_when_asked():
    import openai

    server, port = await serve(KEY, chunks=5, interval=0.02)
    async with server:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        arrivals, text, usage = [], "", None
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter())
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
        assert text.split() == [f"w{i}" for i in range(5)]
        assert usage is not None and usage.completion_tokens == 5
        assert arrivals[-1] - arrivals[0] >= 4 * 0.02 * 0.9  # paced, not sent at once
        plain = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert [c.usage for c in [c async for c in plain]] == [None] * 7  # role+content, 4 content, finish
        await client.close()


async def test_steady_streams_count_only_those_started_with_every_worker_running():
    server, port = await serve(KEY, chunks=5, interval=0.01)
    async with server:
        url = f"http://127.0.0.1:{port}"
        payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {KEY}"}
        burst = await run_streams(url, "/v1/chat/completions", payload, headers, 4, 12, steady=False)
        steady = await run_streams(url, "/v1/chat/completions", payload, headers, 4, 12, steady=True)
        wrong = await run_streams(url, "/v1/chat/completions", payload, {"Authorization": "Bearer no"}, 2, 4)
    assert burst["n"] == 12 and burst["served"] == 13 and burst["errors"] == 0
    assert 0 < steady["n"] < 12 and steady["served"] == 13  # the ramp-up and ramp-down are left out
    # the first content arrives with the first write, the end 4 intervals (40 ms) later
    assert all(0 < t and total - t >= 0.035 for t, total in zip(steady["TTFT"], steady["total"]))
    assert wrong["errors"] == wrong["served"] == 5  # a 401 is an error, warm-up included


def test_interleaved_rounds_rotate_the_order_and_pool_each_target():
    targets = [Target(name, "http://127.0.0.1:1", "/", {}, "m") for name in ("direct", "proxy", "gateway")]
    order = []

    def measure(t):
        order.append(t.name)
        value = {"direct": 1.0, "proxy": 2.0, "gateway": 3.0}[t.name] / 1000
        return {"n": 2, "served": 3, "errors": 0, "elapsed": 0.5, "latency": [value, value]}, 0.25, ("latency",)

    pools = interleaved(targets, 3, measure)
    assert order == ["direct", "proxy", "gateway", "proxy", "gateway", "direct", "gateway", "direct", "proxy"]
    assert pools["proxy"].n == 6 and pools["proxy"].served == 9 and pools["proxy"].cpu == 0.75
    assert pools["gateway"].p("latency", 50) == 3.0 and pools["gateway"].per_round == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("target", ["gateway", "proxy"])
def test_the_in_process_profile_serves_every_request(target):
    """bench/profile_gateway.py drives the app (or the bare proxy) through ASGI against the
    canned provider: every request answered 200, and a CPU figure per request."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "bench/profile_gateway.py", "--target", target, "--concurrency", "4",
                          "--requests", "64", "--profile", "5"], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "64 requests, errors 0" in out.stdout
    cpu = re.search(rf"{target} CPU in-process: ([\d.]+) µs per request", out.stdout)
    assert cpu and float(cpu.group(1)) > 0
    assert "Ordered by: internal time" in out.stdout
    assert "Unclosed" not in out.stderr, "the app's aiohttp session must be closed at the end"
