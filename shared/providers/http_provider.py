"""The base for HTTP providers: auth, send, parse, stream; one hook per wire difference."""

from __future__ import annotations

from typing import Any, AsyncIterator

from shared.config import ProviderConfig

from . import transport
from .auth import Auth
from .base import ChatRequest, Chunk, Completion
from .transport import HttpClient


class HttpChatProvider:
    """Implements `ChatProvider` over HTTP; subclasses describe their wire format."""

    kind = "abstract"

    def __init__(self, config: ProviderConfig, http: HttpClient, auth: Auth, *, max_response_bytes: int = 16 << 20) -> None:
        self.config = config
        self.name = config.name
        self.http = http
        self.auth = auth
        self.max_response_bytes = max_response_bytes

    # -- wire hooks ---------------------------------------------------------
    def url(self, stream: bool) -> str:
        raise NotImplementedError

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_completion(self, body: Any) -> Completion:
        raise NotImplementedError

    def stream_chunks(self, batches: AsyncIterator[list[bytes]]) -> AsyncIterator[Chunk]:
        """Chunks from the body's lines, which arrive as a list per network read."""
        raise NotImplementedError

    # -- ChatProvider --------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        headers = await self.auth.headers()
        resp = await transport.send(self.http, self.name, self.url(False), headers, self.payload(request, False), self.config.timeouts)
        body = await transport.read_json(self.name, resp, self.config.timeouts, self.max_response_bytes)
        return self.parse_completion(body)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        headers = await self.auth.headers()
        resp = await transport.send(self.http, self.name, self.url(True), headers, self.payload(request, True), self.config.timeouts)
        lines = transport.iter_line_batches(self.name, resp, self.config.timeouts.stream_idle_seconds, self.max_response_bytes)
        chunks = self.stream_chunks(lines)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
            await lines.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.config.model!r})"
