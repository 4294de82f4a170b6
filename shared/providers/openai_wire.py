"""Pure functions over the OpenAI wire format (SSE lines in, chunk dicts out).

Shared by the OpenAI-compatible and Azure OpenAI providers; testable with literal
fixtures and no network.
"""

from __future__ import annotations

from typing import Any

from shared import jsonio

from .base import PROTOCOL, STATUS, Chunk, ProviderError

DONE = object()
"""Returned by `parse_sse_line` for `data: [DONE]`."""

# Fields the gateway consumes itself and never forwards.
GATEWAY_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "task_type"})


def request_body(messages: list[dict[str, Any]], params: dict[str, Any], stream: bool, model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages}
    if model is not None:
        body["model"] = model
    for key, value in params.items():
        if key not in GATEWAY_FIELDS:
            body[key] = value
    if stream:
        body["stream"] = True
        # Always ask for usage so every stream is costed; the router decides
        # whether the caller sees the usage chunk.
        body["stream_options"] = {"include_usage": True}
    return body


def parse_sse_line(provider: str, line: bytes) -> Chunk | object | None:
    """One SSE line: a chunk dict, `DONE`, or None for lines that carry no data.

    An error event raises `ProviderError`; an unparsable data line raises one too.
    """
    if not line.startswith(b"data:"):
        return None  # blank separators, comments (":"), event:/id:/retry: fields
    data = line[5:].strip()
    if not data:
        return None
    if data == b"[DONE]":
        return DONE
    try:
        chunk = jsonio.loads(data)
    except ValueError:
        raise ProviderError(provider, PROTOCOL, "malformed stream event (not JSON)") from None
    if not isinstance(chunk, dict):
        raise ProviderError(provider, PROTOCOL, "malformed stream event (not an object)")
    if "error" in chunk and "choices" not in chunk:
        raise ProviderError(provider, STATUS, f"error event in stream: {_message(chunk['error'])}", body=chunk)
    return chunk


def parse_sse_lines(provider: str, lines: list[bytes], out: list[Chunk]) -> bool:
    """Append the chunks of one network read's lines to `out`; True once `[DONE]` is read.

    Raises like `parse_sse_line`; the chunks before the bad line are already in `out`.
    """
    for line in lines:
        event = parse_sse_line(provider, line)
        if event is None:
            continue
        if event is DONE:
            return True
        chunk = normalize_chunk(event)  # type: ignore[arg-type]
        if chunk is not None:
            out.append(chunk)
    return False


def _message(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err.get("code") or "error")[:300]
    return str(err)[:300]


def normalize_chunk(chunk: Chunk) -> Chunk | None:
    """Drop provider-only events (Azure's leading prompt_filter_results chunk)."""
    if not chunk.get("choices") and not chunk.get("usage"):
        return None
    chunk.pop("prompt_filter_results", None)
    chunk.setdefault("object", "chat.completion.chunk")
    return chunk


def check_completion(provider: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ProviderError(provider, PROTOCOL, "response is not a chat.completion object")
    body.setdefault("object", "chat.completion")
    body.pop("prompt_filter_results", None)
    return body


def has_content(chunk: Chunk) -> bool:
    """True once a chunk carries output (text, a refusal or a tool call): the commit point."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("function_call") or delta.get("refusal"):
            return True
    return False
