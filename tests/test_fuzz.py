"""Bad input: property-based fuzzing of the request parser, and the request limits.

Two levels:
* the parser (`decode_body` + `parse_chat_request`): any byte string, any JSON value, any
  chat-shaped object raises nothing but a `GatewayError` with a 4xx status;
* the HTTP function (`function_app.py` served in-process by the local host's ASGI app, with
  fake providers behind it): any body and hint headers get a 2xx or a 4xx with an OpenAI-style
  error body, never a 5xx, never a hang.

Limits (body size, message count, total characters, max_tokens) are enforced before any
provider is called: the fakes' call counts do not move.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api.request import ROLES, decode_body, parse_chat_request
from shared.config import Limits
from shared.errors import GatewayError
from tests.fakes.llm import FakeLLM
from tests.gateway_helpers import asgi_client, env_for, make_gateway, openai_provider

LIMITS = Limits(max_body_bytes=8192, max_messages=8, max_total_chars=2000, max_tokens=256,
                total_timeout_seconds=5.0, max_response_bytes=1 << 20, max_attempts=3)


# -- in-process HTTP: the function app behind the local host's ASGI app ---------------------------

# -- strategies -------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
parts = st.fixed_dictionaries({}, optional={"type": st.sampled_from(["text", "image_url"]) | json_values,
                                            "text": st.text(max_size=40) | json_values})
messages = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(sorted(ROLES)) | json_values,
    "content": st.text(max_size=60) | st.lists(parts, max_size=3) | json_values,
    "name": st.text(max_size=10) | json_values,
})
chat_bodies = st.fixed_dictionaries(
    {"messages": st.lists(messages, min_size=0, max_size=10) | json_values},
    optional={
        "model": st.sampled_from(["auto", "default", "fast", "nope"]) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values}) | json_values,
        "temperature": st.floats(-1, 3) | json_values,
        "top_p": st.floats(-0.5, 1.5) | json_values,
        "max_tokens": st.integers(-5, 400) | json_values,
        "max_completion_tokens": st.integers(-5, 400) | json_values,
        "n": st.integers(-1, 10) | json_values,
        "seed": st.integers() | json_values,
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | json_values,
        "user": st.text(max_size=10) | json_values,
        "task_type": st.sampled_from(["code", "qa", "chat", "poetry"]) | json_values,
        "presence_penalty": st.floats(-3, 3) | json_values,
        "tools": json_values,
    },
)
good_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=60)},
    optional={"name": st.text(max_size=10)},
)
good_bodies = st.fixed_dictionaries(
    {"messages": st.lists(good_messages, min_size=1, max_size=4)},
    optional={
        "model": st.sampled_from(["auto", "default", "fast", "spare", "nope"]),
        "stream": st.booleans(),
        "temperature": st.floats(0, 2.5),
        "max_tokens": st.integers(0, 120),
        "n": st.integers(1, 9),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=5),
        "user": st.text(max_size=10),
        "task_type": st.sampled_from(["code", "qa", "chat", "summarization", "poetry"]),
        "metadata": json_values,
    },
)
header_text = st.sampled_from(["code", "qa", "cost", "quality", "latency", " "]) | st.text(
    alphabet=string.printable.strip() + " ", max_size=20)
hint_headers = st.fixed_dictionaries({}, optional={"x-task-type": header_text, "x-routing-strategy": header_text})


def check_parser(raw: bytes, headers: dict[str, str] | None = None) -> None:
    try:
        parse_chat_request(decode_body(raw, LIMITS), LIMITS, headers or {})
    except GatewayError as err:
        assert 400 <= err.status < 500, (err.status, err.message)
        body = err.body()["error"]
        assert isinstance(body["message"], str) and body["message"]
        assert body["type"] == "invalid_request_error" and isinstance(body["code"], str)
        json.dumps(err.body())


# -- the parser ---------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, database=None)
@given(st.binary(max_size=1024))
def test_parser_any_bytes_is_accepted_or_a_4xx(raw):
    check_parser(raw)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values)
def test_parser_any_json_value_is_accepted_or_a_4xx(value):
    check_parser(json.dumps(value).encode())


@settings(max_examples=200, deadline=None, database=None)
@given(chat_bodies | good_bodies, hint_headers)
def test_parser_any_chat_shaped_body_is_accepted_or_a_4xx(body, headers):
    check_parser(json.dumps(body).encode(), headers)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 does not count); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


big_ints = st.integers(min_value=-(10**40), max_value=10**40)
exact_values = st.recursive(
    scalars | big_ints,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.text(max_size=8), exact_values, max_size=6), st.booleans())
def test_a_body_is_read_exactly_as_the_standard_library_reads_it(body, ascii_only):
    raw = json.dumps(body, ensure_ascii=ascii_only).encode()
    assert _same(decode_body(raw, LIMITS), json.loads(raw))


@pytest.mark.parametrize("value", ["123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
                                   "NaN", "1e400", '"\\ud800"'])
def test_values_a_fast_parser_would_change_reach_the_request_as_sent(value):
    raw = ('{"messages": [{"role": "user", "content": "hi"}], "metadata": {"v": %s}}' % value).encode()
    request = parse_chat_request(decode_body(raw, LIMITS), LIMITS, {})
    assert _same(request.params["metadata"], json.loads(raw)["metadata"])


@pytest.mark.parametrize("raw", [
    b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000, b'{"messages": 1e999999}', b"\xff\xfe{}", b'"\\ud800"',
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 1' + b"0" * 5000 + b"}",
])
def test_parser_pathological_inputs(raw):
    limits = Limits(max_body_bytes=1 << 20, max_messages=8, max_total_chars=2000, max_tokens=256,
                    total_timeout_seconds=5.0, max_response_bytes=1 << 20, max_attempts=3)
    try:
        parse_chat_request(decode_body(raw, limits), limits, {})
    except GatewayError as err:
        assert 400 <= err.status < 500


# -- through HTTP -------------------------------------------------------------------------------


class Served:
    """Fakes, a gateway and an in-process HTTP client, all on one private event loop."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.fakes = (FakeLLM("fast", api_key="k-fast"), FakeLLM("spare", api_key="k-spare"))
        self._stack = contextlib.AsyncExitStack()

    def run(self, coro, timeout: float = 10.0):
        async def bounded():
            async with asyncio.timeout(timeout):  # a hang fails the example instead of the run
                return await coro
        return self.runner.run(bounded())

    async def start(self) -> None:
        for f in self.fakes:
            await f.start()
        fast, spare = self.fakes
        doc = {
            "providers": {"fast": openai_provider(fast, "m1", price=(0.0001, 0.0001)),
                          "spare": openai_provider(spare, "m2", price=(0.001, 0.001))},
            "routes": {"default": {"candidates": ["fast", "spare"], "strategy": "cost"}},
            "limits": {"max_body_bytes": 4096, "max_messages": 4, "max_total_chars": 1000, "max_tokens": 100},
        }
        self.gateway = make_gateway(doc, env_for(*self.fakes))
        await self.gateway.start()
        self.client = await self._stack.enter_async_context(asgi_client(self.gateway))

    async def stop(self) -> None:
        await self._stack.aclose()
        await self.gateway.close()
        for f in self.fakes:
            await f.stop()

    def calls(self) -> int:
        return sum(f.call_count for f in self.fakes)


@pytest.fixture(scope="module")
def served():
    s = Served()
    s.run(s.start())
    try:
        yield s
    finally:
        s.run(s.stop())
        s.runner.close()


def assert_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["type"] and err["code"]
        assert "Traceback" not in r.text
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")
        assert '"error"' not in r.text
    else:
        assert r.json()["choices"]


async def post(client: httpx.AsyncClient, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/api/v1/chat/completions", content=content,
                             headers={"content-type": "application/json", **(headers or {})})


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_http_any_body_is_2xx_or_4xx(served, raw):
    assert_answer(served.run(post(served.client, raw)))


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_bodies | good_bodies, hint_headers)
def test_http_any_chat_shaped_body_is_2xx_or_4xx(served, body, headers):
    assert_answer(served.run(post(served.client, json.dumps(body).encode(), headers)))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_http_route_endpoint_is_2xx_or_4xx(served, value):
    r = served.run(served.client.post("/api/v1/route", content=json.dumps(value).encode()))
    if r.status_code == 200:
        assert r.json()["route"]["candidates"]
    else:
        assert_answer(r)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize("body,status,code,param", [
    ({"messages": [user("x" * 5000)]}, 413, "request_too_large", None),
    ({"messages": [user("hi")] * 5}, 413, "too_many_messages", "messages"),
    ({"messages": [user("y" * 400), user("y" * 400), user("y" * 201)]}, 413, "too_many_characters", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "z" * 1001}]}]}, 413, "too_many_characters", "messages"),
    ({"messages": [user("hi")], "max_tokens": 101}, 400, "max_tokens_too_large", "max_tokens"),
    ({"messages": [user("hi")], "max_completion_tokens": 101}, 400, "max_tokens_too_large", "max_completion_tokens"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_limits_are_enforced_before_any_provider_call(served, body, status, code, param, stream):
    calls = served.calls()
    r = served.run(post(served.client, json.dumps({**body, "stream": stream}).encode()))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param and err["type"] == "invalid_request_error"
    assert served.calls() == calls  # no provider was called


def test_body_limit_holds_without_content_length(served):
    """A chunked body (no Content-Length to check up front) is cut off at the limit while read."""
    calls = served.calls()

    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    async def send():
        return await served.client.post("/api/v1/chat/completions", content=chunks())

    r = served.run(send())
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert served.calls() == calls


def test_limits_allow_a_request_just_under_them(served):
    calls = served.calls()
    body = {"messages": [user("y" * 250)] * 4, "max_tokens": 100}
    r = served.run(post(served.client, json.dumps(body).encode()))
    assert r.status_code == 200 and r.json()["choices"]
    assert served.calls() == calls + 1
