"""Any OpenAI-compatible endpoint: `POST {endpoint}/chat/completions`, bearer key."""

from __future__ import annotations

from functools import partial
from typing import Any

from .base import PROTOCOL, ChatRequest, Completion
from .http_provider import HttpChatProvider, StreamParser
from .openai_wire import check_completion, parse_sse_lines, request_body


class OpenAICompatibleProvider(HttpChatProvider):
    kind = "openai"
    send_model = True

    def url(self, stream: bool) -> str:
        return f"{self.config.endpoint}/chat/completions"

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return request_body(request.messages, request.params, stream, self.config.model if self.send_model else None)

    def parse_completion(self, body: Any) -> Completion:
        return check_completion(self.name, body)

    stream_eof_message = "stream ended without [DONE]"

    def stream_parser(self) -> StreamParser:
        return partial(parse_sse_lines, self.name)


class AzureOpenAIProvider(OpenAICompatibleProvider):
    """Azure OpenAI: deployment URL with `api-version`; `api-key` header or Entra ID bearer."""

    kind = "azure_openai"
    send_model = False

    def url(self, stream: bool) -> str:
        c = self.config
        return f"{c.endpoint}/openai/deployments/{c.deployment}/chat/completions?api-version={c.api_version}"


__all__ = ["OpenAICompatibleProvider", "AzureOpenAIProvider", "PROTOCOL"]
