"""Network helpers around the fake LLM: a port that refuses connections, a
server that answers non-HTTP bytes, and a background-thread runner."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from typing import Any, Awaitable

_HELD: deque[socket.socket] = deque(maxlen=256)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 whose port refuses connections: the port is bound
    (so nothing else takes it) but never listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


# A TLS handshake-failure alert followed by bytes no HTTP parser accepts.
TLS_GARBAGE = b"\x15\x03\x03\x00\x02\x02\x28" + bytes(range(0x80, 0xC0)) + b"\x00\xff\r\n\r\n"


class GarbageServer:
    """A raw TCP server on 127.0.0.1 that answers every connection with
    non-HTTP bytes (by default a TLS alert), then closes it."""

    def __init__(self, payload: bytes = TLS_GARBAGE, *, read_first: bool = True) -> None:
        self.payload = payload
        self.read_first = read_first
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._port = 0

    async def start(self) -> "GarbageServer":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "GarbageServer":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.read_first:
                try:
                    await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    pass
            writer.write(self.payload)
            await asyncio.wait_for(writer.drain(), 1.0)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


class FakeLLMThread:
    """Run fakes (anything with async `start()`/`stop()`) on an event loop in a
    background thread, for synchronous clients and the demo mode.

        with FakeLLMThread(FakeLLM("a"), FakeLLM("b")) as (a, b):
            openai.OpenAI(base_url=a.openai_base_url, api_key=a.api_key)...

    `__enter__` returns once every port is open; faults may be set from the
    calling thread. `run(coro)` runs a coroutine on the fakes' loop.
    """

    def __init__(self, *servers: Any, timeout: float = 10.0) -> None:
        self.servers = servers
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fake-llm", daemon=True)

    def __enter__(self) -> tuple[Any, ...]:
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise TimeoutError("fake servers did not start in time")
        if self._error is not None:
            raise RuntimeError("fake servers failed to start") from self._error
        return self.servers

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.timeout)

    def run(self, coro: Awaitable[Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        started = []
        try:
            for server in self.servers:
                await server.start()
                started.append(server)
        except BaseException as exc:  # reported to __enter__
            self._error = exc
        self._ready.set()
        try:
            if self._error is None:
                await self._stop.wait()
        finally:
            for server in reversed(started):
                await server.stop()


