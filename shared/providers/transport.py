"""One shared aiohttp session per instance, and provider HTTP calls with timeouts.

Maps every transport failure to a `ProviderError` kind, bounds response sizes,
and reads stream lines as they arrive (no buffering beyond one network read).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any, Mapping

import aiohttp

from shared import jsonio
from shared.config import Timeouts

from .base import CONNECT, PROTOCOL, STREAM_BROKEN, TIMEOUT, TOO_LARGE, ProviderError, kind_for_status


class HttpClient:
    """Owns the instance's single `aiohttp.ClientSession` (created on first use)."""

    def __init__(self, *, limit: int = 256, limit_per_host: int = 0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limit = limit
        self._limit_per_host = limit_per_host

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit_per_host,
                ttl_dns_cache=300, enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=json.dumps,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def open_connections(self) -> int:
        """Connections held by the pool (acquired plus idle), for leak checks."""
        if self._session is None or self._session.closed:
            return 0
        conn = self._session.connector
        acquired = len(getattr(conn, "_acquired", ()))
        idle = sum(len(v) for v in getattr(conn, "_conns", {}).values())
        return acquired + idle

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


@functools.cache
def _timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, connect=t.connect_seconds, sock_connect=t.connect_seconds)


async def send(
    client: HttpClient,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Any,
    timeouts: Timeouts,
) -> aiohttp.ClientResponse:
    """POST JSON and return the response once its headers arrived with a 2xx status.

    An error status raises `ProviderError` with the parsed error body and Retry-After.
    """
    try:
        async with asyncio.timeout(timeouts.first_byte_seconds):
            resp = await _post(client, provider, url, headers, body, timeouts)
    except TimeoutError:
        raise _no_headers(provider, timeouts) from None
    if resp.status >= 400 or resp.status < 200:
        await _raise_status(provider, resp)
    return resp


async def post_json(
    client: HttpClient,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Any,
    timeouts: Timeouts,
    max_bytes: int,
) -> Any:
    """`send`, then read the whole JSON body (bounded in size, and in time by
    `total_seconds` from the headers on), under one timer rather than one per phase."""
    loop = asyncio.get_running_loop()
    reading = False
    try:
        async with asyncio.timeout(timeouts.first_byte_seconds) as deadline:
            resp = await _post(client, provider, url, headers, body, timeouts)
            if resp.status >= 400 or resp.status < 200:
                deadline.reschedule(None)
                await _raise_status(provider, resp)
            reading = True
            if not resp.content.is_eof():  # a small body usually came with the headers: no new timer
                deadline.reschedule(loop.time() + timeouts.total_seconds)
            raw = await _read_body(provider, resp, max_bytes)
    except TimeoutError:
        if reading:
            raise ProviderError(provider, TIMEOUT, f"response body not complete within {timeouts.total_seconds:g}s") from None
        raise _no_headers(provider, timeouts) from None
    try:
        return jsonio.loads(raw)
    except ValueError:
        raise ProviderError(provider, PROTOCOL, "response body is not valid JSON") from None


def _no_headers(provider: str, timeouts: Timeouts) -> ProviderError:
    return ProviderError(provider, TIMEOUT, f"no response headers within {timeouts.first_byte_seconds:g}s")


async def _post(
    client: HttpClient, provider: str, url: str, headers: Mapping[str, str], body: Any, timeouts: Timeouts
) -> aiohttp.ClientResponse:
    try:
        return await client.session.post(
            url, data=jsonio.dumps(body), headers={**headers, "Content-Type": "application/json"},
            timeout=_timeout(timeouts), allow_redirects=False,
        )
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(provider, CONNECT, f"cannot connect ({_oserror(exc)})") from None
    except aiohttp.ServerDisconnectedError:
        raise ProviderError(provider, CONNECT, "server closed the connection before responding") from None
    except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
        raise ProviderError(provider, PROTOCOL, f"malformed HTTP response ({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(provider, CONNECT, f"connection failed ({type(exc).__name__})") from None


async def _raise_status(provider: str, resp: aiohttp.ClientResponse) -> None:
    from shared.resilience.retry_after import parse_retry_after

    body: Any = None
    try:
        async with asyncio.timeout(5):
            raw = await resp.content.read(64 * 1024)
        body = jsonio.loads(raw) if raw else None
    except Exception:
        body = None
    finally:
        resp.release()
    retry_after = parse_retry_after(resp.headers, time.time())
    message = _error_message(body) or resp.reason or "error"
    raise ProviderError(
        provider, kind_for_status(resp.status), f"HTTP {resp.status}: {message}",
        status=resp.status, retry_after=retry_after, body=body if isinstance(body, dict) else None,
    )


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:300]
        if isinstance(err, str):
            return err[:300]
    return None


def _oserror(exc: aiohttp.ClientConnectorError) -> str:
    os_err = getattr(exc, "os_error", None)
    return (os_err.strerror if os_err and os_err.strerror else type(exc).__name__)


async def _read_body(provider: str, resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, bounded in size; the response is released."""
    try:
        chunks = []
        size = 0
        async for data in resp.content.iter_any():
            size += len(data)
            if size > max_bytes:
                raise ProviderError(provider, TOO_LARGE, f"response larger than {max_bytes} bytes")
            chunks.append(data)
    except aiohttp.ClientError as exc:
        raise ProviderError(provider, CONNECT, f"connection broke while reading the body ({type(exc).__name__})") from None
    finally:
        resp.release()
    return b"".join(chunks)


class _IdleWatch:
    """Ends a stream whose provider has been silent for `idle` seconds while we wait for it.

    One timer per stream, re-armed only when it comes due early, instead of a timer scope
    around every network read (which cost a timer start and stop per chunk). Only time spent
    waiting for the provider counts: while the caller is slow to take a chunk, it does not.
    When it fires, it closes the response, which wakes the pending read.
    """

    __slots__ = ("last", "reading", "fired", "_loop", "_idle", "_resp", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: float, resp: aiohttp.ClientResponse) -> None:
        self._loop, self._idle, self._resp = loop, idle, resp
        self.last = loop.time()
        self.reading = False
        self.fired = False
        self._handle = loop.call_at(self.last + idle, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if not self.reading:
            self._handle = self._loop.call_at(now + self._idle, self._check)
        elif now + 0.001 >= self.last + self._idle:
            self.fired = True
            self._resp.close()
        else:
            self._handle = self._loop.call_at(self.last + self._idle, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


FIRST_READ_BYTES = 2048
"""A stream's reads are bounded to this many bytes until they yield a line: when a provider
sends much of its answer at once, its first events reach the caller before the rest is taken
in (aiohttp hands a buffered body over one HTTP chunk at a time, at a cost per chunk)."""


class LineReader:
    """A response body's lines (without line endings), a list per network read: `read()`
    returns the lines that read completed, as soon as it delivers them, and None at the end
    (until the first line, at most `FIRST_READ_BYTES` at a time).

    One awaited call per network read, rather than a generator per layer (each of which
    costs a resume per item it hands up). A silence longer than `idle_seconds` while
    waiting, or a body over `max_bytes`, raises `ProviderError`. `close()` releases the
    response: back to the pool when read to its end, closed (which cancels the upstream
    request at once) otherwise.
    """

    __slots__ = ("_provider", "_resp", "_content", "_buffer", "_size", "_max", "_eof", "_watch", "_clock",
                 "_stalled", "_started")

    def __init__(self, provider: str, resp: aiohttp.ClientResponse, idle_seconds: float, max_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        self._provider = provider
        self._resp = resp
        self._content = resp.content
        self._buffer = b""
        self._size = 0
        self._max = max_bytes
        self._eof = False
        self._clock = loop.time
        self._watch = _IdleWatch(loop, idle_seconds, resp)
        self._stalled = f"stream stalled: no data for {idle_seconds:g}s"
        self._started = False

    async def read(self) -> list[bytes] | None:
        watch = self._watch
        while not self._eof:
            watch.last = self._clock()
            watch.reading = True
            try:
                if self._started:
                    data = await self._content.readany()
                else:
                    data = await self._content.read(FIRST_READ_BYTES)
            except aiohttp.ClientError as exc:
                if watch.fired:
                    raise ProviderError(self._provider, TIMEOUT, self._stalled) from None
                raise ProviderError(self._provider, STREAM_BROKEN, f"stream broke ({type(exc).__name__})") from None
            finally:
                watch.reading = False
            if watch.fired:
                raise ProviderError(self._provider, TIMEOUT, self._stalled)
            if not data:
                self._eof = True
                rest, self._buffer = self._buffer, b""
                return [rest.rstrip(b"\r")] if rest.strip() else None
            self._size += len(data)
            if self._size > self._max:
                raise ProviderError(self._provider, TOO_LARGE, f"stream larger than {self._max} bytes")
            buffer = self._buffer + data
            # (``find``, not ``in``: ``in`` on bytes first tries its operand as an int and
            # builds a TypeError message each time.)
            if data.find(b"\n") < 0:
                self._buffer = buffer
                continue
            self._started = True
            crlf = buffer.find(b"\r") >= 0
            *lines, self._buffer = buffer.split(b"\n")
            return [line.rstrip(b"\r") for line in lines] if crlf else lines
        return None

    def close(self, complete: bool = False) -> None:
        """Release the response. `complete`: the stream's end marker was read, so only the
        body's framing can be left: it is read in the background (bounded) and the
        connection goes back to the pool, instead of a new connection for the next stream."""
        self._watch.cancel()
        resp = self._resp
        if self._eof or (complete and self._content.at_eof()):
            resp.release()
        elif complete:
            task = asyncio.get_running_loop().create_task(_drain(resp))
            _DRAINING.add(task)
            task.add_done_callback(_DRAINING.discard)
        else:
            resp.close()


_DRAINING: set[asyncio.Task] = set()
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 64 * 1024


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what is left of a finished stream's body (its chunked-encoding end, normally),
    then release the connection; close it instead if more than a little is left or it takes
    long."""
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            left = _DRAIN_BYTES
            while left > 0 and (data := await resp.content.readany()):
                left -= len(data)
        if resp.content.at_eof():
            resp.release()
            return
    except (TimeoutError, aiohttp.ClientError):
        pass
    resp.close()
