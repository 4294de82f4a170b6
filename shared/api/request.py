"""Parse and validate an OpenAI Chat Completions request body.

Every problem becomes an `InvalidRequest` (400) or `PayloadTooLarge` (413) naming
the offending parameter, before any provider is called. Unknown OpenAI fields
are kept and forwarded to OpenAI-kind providers; nothing is dropped silently, and every
value is read exactly as the standard library reads it (`jsonio.loads_exact`).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from shared import jsonio
from shared.config import Limits
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.providers.base import ChatRequest
from shared.routing.planner import check_strategy, check_task_type

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def decode_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_body_bytes:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limits.max_body_bytes}", code="request_too_large")
    if not raw.strip():
        raise InvalidRequest("request body is empty; send a JSON object", code="invalid_json")
    try:
        body = jsonio.loads_exact(raw)
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequest(f"request body is not valid JSON{where}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {_type_name(body)}", code="invalid_json")
    return body


def parse_chat_request(body: dict[str, Any], limits: Limits, headers: Mapping[str, str] | None = None) -> ChatRequest:
    headers = headers or {}
    messages = _messages(body.get("messages"), limits)
    model = body.get("model", "auto")
    if model is None:
        model = "auto"
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("`model` must be a non-empty string ('auto', a route or a provider name)", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest(f"`stream` must be a boolean, not {_type_name(stream)}", param="stream")
    include_usage = False
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise InvalidRequest("`stream_options` must be an object", param="stream_options")
        if not stream:
            raise InvalidRequest("`stream_options` is only allowed when `stream` is true", param="stream_options")
        iu = opts.get("include_usage", False)
        if not isinstance(iu, bool):
            raise InvalidRequest("`stream_options.include_usage` must be a boolean", param="stream_options.include_usage")
        include_usage = iu

    task_type = None
    header_task = headers.get("x-task-type")
    if header_task is not None and header_task.strip():
        task_type = check_task_type(header_task.strip(), "X-Task-Type")
    elif body.get("task_type") is not None:
        task_type = check_task_type(body["task_type"], "task_type")
    strategy = None
    header_strategy = headers.get("x-routing-strategy")
    if header_strategy is not None and header_strategy.strip():
        strategy = check_strategy(header_strategy.strip(), "X-Routing-Strategy")

    params = {k: v for k, v in body.items() if k not in ("messages", "model", "stream", "stream_options", "task_type")}
    _check_params(params, limits)
    return ChatRequest(messages=messages, model=model.strip(), params=params, stream=stream,
                       include_usage=include_usage, task_type=task_type, strategy=strategy)


def _messages(value: Any, limits: Limits) -> list[dict[str, Any]]:
    if value is None:
        raise InvalidRequest("`messages` is required: a non-empty array of chat messages", param="messages", code="missing_messages")
    if not isinstance(value, list):
        raise InvalidRequest(f"`messages` must be an array, not {_type_name(value)}", param="messages")
    if not value:
        raise InvalidRequest("`messages` must contain at least one message", param="messages", code="empty_messages")
    if len(value) > limits.max_messages:
        raise PayloadTooLarge(f"{len(value)} messages; the limit is {limits.max_messages}", param="messages", code="too_many_messages")
    total = 0
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(f"`{where}` must be an object, not {_type_name(m)}", param=where)
        role = m.get("role")
        if not isinstance(role, str):
            raise InvalidRequest(f"`{where}.role` is required and must be a string", param=f"{where}.role")
        if role not in ROLES:
            raise InvalidRequest(
                f"`{where}.role` {role[:32]!r} is not one of {', '.join(sorted(ROLES))}",
                param=f"{where}.role", code="invalid_role",
            )
        content = m.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise InvalidRequest(f"`{pw}` must be an object with a string `type`", param=pw)
                text = part.get("text")
                if part["type"] == "text":
                    if not isinstance(text, str):
                        raise InvalidRequest(f"`{pw}.text` must be a string", param=f"{pw}.text")
                    total += len(text)
        elif content is None:
            if role in ("user", "system", "developer"):
                raise InvalidRequest(f"`{where}.content` is required for role {role}", param=f"{where}.content")
        else:
            raise InvalidRequest(f"`{where}.content` must be a string, an array of parts or null, not {_type_name(content)}",
                                 param=f"{where}.content")
        name = m.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequest(f"`{where}.name` must be a string", param=f"{where}.name")
    if total > limits.max_total_chars:
        raise PayloadTooLarge(f"messages hold {total} characters; the limit is {limits.max_total_chars}",
                              param="messages", code="too_many_characters")
    return value


def _check_params(params: dict[str, Any], limits: Limits) -> None:
    for key, (lo, hi) in _NUMBER_RANGES.items():
        v = params.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidRequest(f"`{key}` must be a number, not {_type_name(v)}", param=key)
        if not lo <= v <= hi:
            raise InvalidRequest(f"`{key}` must be between {lo:g} and {hi:g}", param=key)
    for key in ("max_tokens", "max_completion_tokens", "n", "seed"):
        v = params.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidRequest(f"`{key}` must be an integer, not {_type_name(v)}", param=key)
        if key in ("max_tokens", "max_completion_tokens"):
            if v < 1:
                raise InvalidRequest(f"`{key}` must be at least 1", param=key)
            if v > limits.max_tokens:
                raise InvalidRequest(f"`{key}` {v} is over this gateway's limit of {limits.max_tokens}",
                                     param=key, code="max_tokens_too_large")
        if key == "n" and not 1 <= v <= 8:
            raise InvalidRequest("`n` must be between 1 and 8", param="n")
    stop = params.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            pass
        elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop):
            pass
        else:
            raise InvalidRequest("`stop` must be a string or an array of at most 4 strings", param="stop")
    user = params.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("`user` must be a string", param="user")
