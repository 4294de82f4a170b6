"""One shared aiohttp session per instance, and provider HTTP calls with timeouts.

Maps every transport failure to a `ProviderError` kind, bounds response sizes,
and yields stream lines as they arrive (no buffering beyond one network read).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any, AsyncIterator, Mapping

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
            resp = await client.session.post(
                url, data=jsonio.dumps(body), headers={**headers, "Content-Type": "application/json"},
                timeout=_timeout(timeouts), allow_redirects=False,
            )
    except TimeoutError:
        raise ProviderError(provider, TIMEOUT, f"no response headers within {timeouts.first_byte_seconds:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(provider, CONNECT, f"cannot connect ({_oserror(exc)})") from None
    except aiohttp.ServerDisconnectedError:
        raise ProviderError(provider, CONNECT, "server closed the connection before responding") from None
    except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as exc:
        raise ProviderError(provider, PROTOCOL, f"malformed HTTP response ({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(provider, CONNECT, f"connection failed ({type(exc).__name__})") from None
    if resp.status >= 400 or resp.status < 200:
        await _raise_status(provider, resp)
    return resp


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


async def read_json(provider: str, resp: aiohttp.ClientResponse, timeouts: Timeouts, max_bytes: int) -> Any:
    """Read a whole JSON body, bounded in size and time."""
    try:
        async with asyncio.timeout(timeouts.total_seconds):
            chunks = []
            size = 0
            async for data in resp.content.iter_any():
                size += len(data)
                if size > max_bytes:
                    raise ProviderError(provider, TOO_LARGE, f"response larger than {max_bytes} bytes")
                chunks.append(data)
    except TimeoutError:
        raise ProviderError(provider, TIMEOUT, f"response body not complete within {timeouts.total_seconds:g}s") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(provider, CONNECT, f"connection broke while reading the body ({type(exc).__name__})") from None
    finally:
        resp.release()
    try:
        return jsonio.loads(b"".join(chunks))
    except ValueError:
        raise ProviderError(provider, PROTOCOL, "response body is not valid JSON") from None


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


async def iter_line_batches(
    provider: str, resp: aiohttp.ClientResponse, idle_seconds: float, max_bytes: int
) -> AsyncIterator[list[bytes]]:
    """Yield the body's lines (without line endings), as a list per network read: the lines
    each read completes, as soon as it delivers them. (A list per read, not a line at a time:
    an SSE event is two lines, and every item a generator hands up costs a resume in each
    layer above it.)

    A silence longer than `idle_seconds` or a body over `max_bytes` ends the stream
    with a `ProviderError`. The response is released when the iterator is closed.
    """
    buffer = b""
    size = 0
    content = resp.content
    finished = False
    loop = asyncio.get_running_loop()
    clock = loop.time
    watch = _IdleWatch(loop, idle_seconds, resp)
    stalled = f"stream stalled: no data for {idle_seconds:g}s"
    try:
        while True:
            watch.last = clock()
            watch.reading = True
            try:
                data = await content.readany()
            except aiohttp.ClientError as exc:
                if watch.fired:
                    raise ProviderError(provider, TIMEOUT, stalled) from None
                raise ProviderError(provider, STREAM_BROKEN, f"stream broke ({type(exc).__name__})") from None
            watch.reading = False
            if watch.fired:
                raise ProviderError(provider, TIMEOUT, stalled)
            if not data:
                finished = True
                if buffer.strip():
                    yield [buffer]
                return
            size += len(data)
            if size > max_bytes:
                raise ProviderError(provider, TOO_LARGE, f"stream larger than {max_bytes} bytes")
            buffer += data
            if b"\n" not in data:
                continue
            crlf = b"\r" in buffer
            *lines, buffer = buffer.split(b"\n")
            yield [line.rstrip(b"\r") for line in lines] if crlf else lines
    finally:
        watch.cancel()
        # A stream read to its end goes back to the pool; an abandoned one is closed,
        # which cancels the upstream request at once.
        resp.release() if finished else resp.close()
