"""The base for HTTP providers: auth, send, parse, stream; one hook per wire difference."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable

from shared.config import ProviderConfig

from . import transport
from .auth import Auth
from .base import STREAM_BROKEN, ChatRequest, Chunk, Completion, ProviderError
from .transport import HttpClient, LineReader

StreamParser = Callable[[list[bytes], list[Chunk]], bool]
"""One stream's parser: appends the chunks of one network read's lines to the list, and
returns True once the stream's end marker was read. It raises `ProviderError` for an error
event or a malformed line, with the chunks before it already appended."""


class ChunkSource:
    """One open provider stream, read a network read at a time.

    `next_batch()` returns the chunks one read delivered (never an empty list), and None
    after the end marker. A provider failure after some chunks of a read is raised at the
    next call, so those chunks still count as received before it. `close()` releases the
    connection (closing it, which cancels the upstream request, unless read to its end).
    """

    __slots__ = ("_provider", "_reader", "_parse", "_eof_message", "_done", "_error")

    def __init__(self, provider: str, reader: LineReader, parse: StreamParser, eof_message: str) -> None:
        self._provider = provider
        self._reader = reader
        self._parse = parse
        self._eof_message = eof_message
        self._done = False
        self._error: ProviderError | None = None

    async def next_batch(self) -> list[Chunk] | None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        while not self._done:
            lines = await self._reader.read()
            if lines is None:
                raise ProviderError(self._provider, STREAM_BROKEN, self._eof_message)
            out: list[Chunk] = []
            try:
                self._done = self._parse(lines, out)
            except ProviderError as err:
                if not out:
                    raise
                self._error = err
            if out:
                return out
        return None

    async def close(self) -> None:
        self._reader.close(complete=self._done)


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

    def stream_parser(self) -> StreamParser:
        """A parser for one stream's lines (see `StreamParser`)."""
        raise NotImplementedError

    stream_eof_message = "stream ended early"

    # -- ChatProvider --------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        headers = await self.auth.headers()
        body = await transport.post_json(self.http, self.name, self.url(False), headers, self.payload(request, False),
                                         self.config.timeouts, self.max_response_bytes)
        return self.parse_completion(body)

    async def open_source(self, request: ChatRequest) -> ChunkSource:
        """Send a streaming request; the source reads its chunks a network read at a time."""
        headers = await self.auth.headers()
        resp = await transport.send(self.http, self.name, self.url(True), headers, self.payload(request, True), self.config.timeouts)
        reader = LineReader(self.name, resp, self.config.timeouts.stream_idle_seconds, self.max_response_bytes)
        return ChunkSource(self.name, reader, self.stream_parser(), self.stream_eof_message)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        source = await self.open_source(request)
        try:
            while (batch := await source.next_batch()) is not None:
                for chunk in batch:
                    yield chunk
        finally:
            await source.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.config.model!r})"
