"""Pure builders for the three wire formats the fake LLM speaks.

No I/O here: every function turns plain values into the exact dicts / bytes a
real provider sends, so the formats can be read (and checked) in one place.

* OpenAI: `chat.completion`, `chat.completion.chunk` as SSE `data: ...\\n\\n`.
* Azure OpenAI: the OpenAI shapes plus `prompt_filter_results` (a first stream
  event with `choices: []`) and `content_filter_results` in choices.
* Ollama: `/api/chat` objects, streamed as NDJSON lines.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

OPENAI, AZURE, OLLAMA = "openai", "azure", "ollama"

DONE_EVENT = b"data: [DONE]\n\n"
_SAFE = {"filtered": False, "severity": "safe"}


# ---------------------------------------------------------------- request side
def message_text(messages: Any) -> str:
    """All the text in a `messages` list (string or list-of-parts content)."""
    if not isinstance(messages, list):
        return ""
    parts: list[str] = []
    for m in messages:
        if isinstance(m, dict):
            parts.append(_content_text(m.get("content")))
    return "\n".join(p for p in parts if p)


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _content_text(m.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "..."}, ...]
        return " ".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def default_reply(name: str, body: dict[str, Any], words: int = 8) -> str:
    """`[name] ` + the first `words` words of the last user message."""
    echo = " ".join(last_user_text(body.get("messages")).split()[:words])
    return f"[{name}] {echo or 'hello'}"


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def split_text(text: str, n: int) -> list[str]:
    """Exactly `n` pieces whose concatenation is `text` (pieces may be empty
    when `text` is shorter than `n`)."""
    n = max(1, n)
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# ---------------------------------------------------------- OpenAI and Azure
def completion(
    protocol: str, *, cid: str, created: int, model: str, content: str, usage_: dict[str, int]
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "logprobs": None,
        "finish_reason": "stop",
    }
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_,
        "system_fingerprint": "fp_fake",
    }
    if protocol == AZURE:
        choice["content_filter_results"] = content_filter_results()
        body["prompt_filter_results"] = prompt_filter_results()
    return body


def chunk(
    protocol: str,
    *,
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    if protocol == AZURE:
        # Azure annotates content chunks; role and finish chunks carry `{}`.
        choice["content_filter_results"] = content_filter_results() if delta.get("content") else {}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [choice],
    }


def usage_chunk(*, cid: str, created: int, model: str, usage_: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [],
        "usage": usage_,
    }


def azure_prompt_filter_chunk() -> dict[str, Any]:
    """Azure's first stream event: no choices, only the prompt annotations."""
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results(),
    }


def content_filter_results() -> dict[str, Any]:
    return {k: dict(_SAFE) for k in ("hate", "self_harm", "sexual", "violence")}


def prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": content_filter_results()}]


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


# ------------------------------------------------------------------- errors
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    408: ("timeout", None, "Request timed out."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
}


def openai_error(status: int, message: str | None = None, code: str | None = None) -> dict[str, Any]:
    etype, default_code, default_message = _OPENAI_ERRORS.get(
        status, ("server_error", None, "The server had an error while processing your request.")
    )
    return {
        "error": {
            "message": message or default_message,
            "type": etype,
            "param": None,
            "code": code if code is not None else default_code,
        }
    }


def azure_error(status: int, message: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Azure's data-plane error shape: `code` is a string, often the status."""
    defaults = {
        401: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint "
        "for your resource.",
        429: "Requests to the ChatCompletions_Create Operation have exceeded the token rate limit "
        "of your current tier. Please retry after the time in the Retry-After header.",
    }
    return {
        "error": {
            "code": code or str(status),
            "message": message or defaults.get(status) or openai_error(status)["error"]["message"],
        }
    }


def ollama_error(message: str) -> dict[str, str]:
    return {"error": message}


def error_body(protocol: str, status: int, message: str | None = None) -> dict[str, Any]:
    if protocol == OLLAMA:
        return ollama_error(message or openai_error(status)["error"]["message"])
    if protocol == AZURE:
        return azure_error(status, message)
    return openai_error(status, message)


# -------------------------------------------------------------------- Ollama
def ollama_message(*, model: str, created_at: str, content: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": created_at,
        "message": {"role": "assistant", "content": content},
        "done": False,
    }


def ollama_done(
    *, model: str, created_at: str, content: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The final object: `done: true` with the timing and token counters."""
    return {
        "model": model,
        "created_at": created_at,
        "message": {"role": "assistant", "content": content},
        "done_reason": "stop",
        "done": True,
        "total_duration": 1_000_000 * (prompt_tokens + completion_tokens + 1),
        "load_duration": 1_000_000,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 1_000_000 * prompt_tokens,
        "eval_count": completion_tokens,
        "eval_duration": 1_000_000 * completion_tokens,
    }


def ollama_tags(models: list[str]) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": m,
                "model": m,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 1_000_000,
                "digest": hashlib.sha256(m.encode()).hexdigest(),
                "details": {"format": "gguf", "family": "fake", "parameter_size": "1B",
                            "quantization_level": "Q4_0"},
            }
            for m in models
        ]
    }


def ndjson(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
