"""Any OpenAI-compatible endpoint: `POST {endpoint}/chat/completions`, bearer key."""

from __future__ import annotations

from typing import Any, AsyncIterator

from .base import PROTOCOL, STREAM_BROKEN, ChatRequest, Chunk, Completion, ProviderError
from .http_provider import HttpChatProvider
from .openai_wire import DONE, check_completion, normalize_chunk, parse_sse_line, request_body


class OpenAICompatibleProvider(HttpChatProvider):
    kind = "openai"
    send_model = True

    def url(self, stream: bool) -> str:
        return f"{self.config.endpoint}/chat/completions"

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return request_body(request.messages, request.params, stream, self.config.model if self.send_model else None)

    def parse_completion(self, body: Any) -> Completion:
        return check_completion(self.name, body)

    async def stream_chunks(self, batches: AsyncIterator[list[bytes]]) -> AsyncIterator[Chunk]:
        name = self.name
        async for lines in batches:
            for line in lines:
                event = parse_sse_line(name, line)
                if event is None:
                    continue
                if event is DONE:
                    return
                chunk = normalize_chunk(event)  # type: ignore[arg-type]
                if chunk is not None:
                    yield chunk
        raise ProviderError(self.name, STREAM_BROKEN, "stream ended without [DONE]")


class AzureOpenAIProvider(OpenAICompatibleProvider):
    """Azure OpenAI: deployment URL with `api-version`; `api-key` header or Entra ID bearer."""

    kind = "azure_openai"
    send_model = False

    def url(self, stream: bool) -> str:
        c = self.config
        return f"{c.endpoint}/openai/deployments/{c.deployment}/chat/completions?api-version={c.api_version}"


__all__ = ["OpenAICompatibleProvider", "AzureOpenAIProvider", "PROTOCOL"]
