"""Ollama's native API: `POST {endpoint}/api/chat`, NDJSON streaming, translated to OpenAI."""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared import jsonio

from .base import PROTOCOL, STATUS, ChatRequest, Chunk, Completion, ProviderError
from .http_provider import HttpChatProvider, StreamParser

# OpenAI sampling params and their Ollama `options` names.
_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "num_predict",
    "max_completion_tokens": "num_predict",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
_ROLES = {"developer": "system"}


# OpenAI fields that have no Ollama meaning but lose nothing when not sent.
_HARMLESS = frozenset({"user", "n", "stream_options", "response_format", "store", "metadata"})


def unsupported_params(params: dict[str, Any]) -> list[str]:
    """The caller's fields Ollama's /api/chat cannot honour: reported, never dropped silently."""
    out = sorted(k for k in params if k not in _OPTIONS and k not in _HARMLESS)
    fmt = params.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text", "json_object", "json_schema"):
        out.append("response_format")
    if params.get("n") not in (None, 1):
        out.append("n")
    return out


def to_ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        content = m.get("content")
        msg: dict[str, Any] = {"role": _ROLES.get(m["role"], m["role"])}
        if isinstance(content, list):
            texts, images = [], []
            for part in content:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    url = (part.get("image_url") or {}).get("url", "")
                    if url.startswith("data:") and "," in url:
                        images.append(url.split(",", 1)[1])
            msg["content"] = "\n".join(texts)
            if images:
                msg["images"] = images
        else:
            msg["content"] = content or ""
        out.append(msg)
    return out


def to_ollama_request(model: str, request: ChatRequest, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": to_ollama_messages(request.messages), "stream": stream}
    options = {}
    for key, name in _OPTIONS.items():
        if key in request.params and request.params[key] is not None:
            value = request.params[key]
            options[name] = [value] if key == "stop" and isinstance(value, str) else value
    if options:
        body["options"] = options
    fmt = (request.params.get("response_format") or {}).get("type") if isinstance(request.params.get("response_format"), dict) else None
    if fmt in ("json_object", "json_schema"):
        body["format"] = "json"
    return body


def _finish(reason: Any) -> str:
    return "length" if reason == "length" else "stop"


def _usage(line: dict[str, Any]) -> dict[str, int]:
    p = int(line.get("prompt_eval_count") or 0)
    c = int(line.get("eval_count") or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _error(provider: str, obj: dict[str, Any]) -> ProviderError:
    return ProviderError(provider, STATUS, f"error from Ollama: {str(obj.get('error'))[:300]}", body={"error": {"message": str(obj.get("error"))}})


class OllamaProvider(HttpChatProvider):
    kind = "ollama"

    def url(self, stream: bool) -> str:
        return f"{self.config.endpoint}/api/chat"

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return to_ollama_request(self.config.model, request, stream)

    def parse_completion(self, body: Any) -> Completion:
        if isinstance(body, dict) and "error" in body:
            raise _error(self.name, body)
        if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
            raise ProviderError(self.name, PROTOCOL, "response is not an Ollama chat object")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": body["message"].get("content", "")},
                "finish_reason": _finish(body.get("done_reason")),
            }],
            "usage": _usage(body),
        }

    stream_eof_message = "stream ended before done"

    def stream_parser(self) -> StreamParser:
        return _NdjsonParser(self.name, self.config.model)


class _NdjsonParser:
    """Ollama's NDJSON lines to OpenAI chunks, for one stream (see `StreamParser`)."""

    __slots__ = ("_name", "_base", "_first")

    def __init__(self, name: str, model: str) -> None:
        self._name = name
        self._base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                      "created": int(time.time()), "model": model}
        self._first = True

    def __call__(self, lines: list[bytes], out: list[Chunk]) -> bool:
        base = self._base
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = jsonio.loads(line)
            except ValueError:
                raise ProviderError(self._name, PROTOCOL, "malformed stream line (not JSON)") from None
            if not isinstance(obj, dict):
                raise ProviderError(self._name, PROTOCOL, "malformed stream line (not an object)")
            if "error" in obj:
                raise _error(self._name, obj)
            delta: dict[str, Any] = {}
            if self._first:
                delta["role"] = "assistant"
                self._first = False
            text = (obj.get("message") or {}).get("content") or ""
            if text:
                delta["content"] = text
            if obj.get("done"):
                if delta:
                    out.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(obj.get("done_reason"))}]})
                out.append({**base, "choices": [], "usage": _usage(obj)})
                return True
            if delta:
                out.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        return False
