"""A fake LLM provider on 127.0.0.1 that speaks the real wire formats.

One `FakeLLM` serves all three protocols at once:

* OpenAI   `POST {url}/v1/chat/completions` (`Authorization: Bearer <api_key>`),
           `GET {url}/v1/models`
* Azure    `POST {url}/openai/deployments/{deployment}/chat/completions?api-version=...`
           (`api-key: <api_key>` or `Authorization: Bearer <entra_token>`)
* Ollama   `POST {url}/api/chat` (streams unless `"stream": false`), `GET {url}/api/tags`

    async with FakeLLM("primary", api_key="k1") as fake:
        client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key="k1")
        fake.fail_next(1, status=429, headers={"Retry-After": "30"})
        ...
        assert fake.call_count == 2 and fake.streams_completed == 1

The reply is `reply` (a string, or a function of the request body), by default
`"[name] "` + the first eight words of the last user message. A stream sends it
as exactly `chunks` content chunks (empty ones when the reply is shorter),
`chunk_interval` seconds apart; `latency` delays every response's headers.
Usage is estimated at four characters a token. Faults (`tests.fakes.llm_faults`)
apply to chat requests only; every request, faulted or not, is recorded in
`calls` before anything else happens.
`FakeLLMThread` runs fakes on a loop of their own for synchronous code,
`GarbageServer` answers non-HTTP bytes, `closed_port_url()` refuses connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Callable, Iterable

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import llm_faults as F
from tests.fakes import llm_wire as W
from tests.fakes.llm_faults import Fault
from tests.fakes.llm_net import TLS_GARBAGE, FakeLLMThread, GarbageServer, closed_port_url

__all__ = [
    "TLS_GARBAGE", "Call", "FakeLLM", "FakeLLMThread", "Fault", "GarbageServer", "closed_port_url",
]

Reply = str | Callable[[dict[str, Any]], str] | None

_PRE, _CONTENT, _POST = 0, 1, 2  # stream event positions relative to the content chunks
_HUGE_CHUNK = 64 * 1024


@dataclass(slots=True)
class Call:
    """One request the fake received."""

    protocol: str  # "openai" | "azure" | "ollama"
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]  # case-insensitive
    body: Any  # parsed JSON, or None when absent or unparsable
    started: float  # time.monotonic()
    stream: bool = False
    fault: Fault | None = None
    status: int | None = None
    outcome: str = "pending"  # completed | rejected | cancelled | aborted | streaming
    chunk_times: list[float] = field(default_factory=list)  # monotonic time of each stream event
    ended: float | None = None
    cancelled_at: float | None = None  # when the client went away
    index: int = 0  # position in `FakeLLM.calls`


class FakeLLM:
    def __init__(
        self,
        name: str = "fake",
        *,
        api_key: str = "test-key",
        entra_token: str = "entra-token",
        models: Iterable[str] | None = None,
        reply: Reply = None,
        chunks: int = 5,
        chunk_interval: float = 0.0,
        latency: float = 0.0,
        port: int = 0,
    ) -> None:
        """`models=None` serves any model / deployment name; a list enforces it
        (404 `model_not_found` / `DeploymentNotFound` / `model 'x' not found`)."""
        self.name = name
        self.api_key = api_key  # assign at run time to rotate: the old key then gets 401
        self.entra_token = entra_token
        self.models = list(models) if models is not None else None
        self.reply = reply
        self.chunks = chunks
        self.chunk_interval = chunk_interval
        self.latency = latency
        self._port = port
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._lock = threading.Lock()  # faults may be set from another thread
        self._queued: deque[Fault | None] = deque()
        self._persistent: Fault | None = None
        self.reset_records()

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> "FakeLLM":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_get("/v1/models", self._openai_models)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_post("/api/chat", self._ollama)
        app.router.add_get("/api/tags", self._ollama_tags)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # releases stalled streams
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeLLM":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{self.name}: start() the fake before asking for its URL")
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        return self.url

    @property
    def ollama_endpoint(self) -> str:
        return self.url

    # ----------------------------------------------------------------- faults
    def inject(self, fault: Fault | None, times: int = 1) -> None:
        """Apply `fault` to the next `times` matching chat requests (None: serve
        them normally, which lets a test script a sequence)."""
        with self._lock:
            self._queued.extend([fault] * times)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        retry_after: float | str | None = None,
    ) -> None:
        self.inject(Fault.error(status, headers=headers, body=body, retry_after=retry_after), n)

    def set_fault(self, fault: Fault | None) -> None:
        """Apply `fault` to every chat request until cleared (queued faults go first)."""
        with self._lock:
            self._persistent = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._queued.clear()
            self._persistent = None

    def _pick_fault(self, call: Call) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._queued):
                if fault is None or fault.applies_to(call):
                    del self._queued[i]
                    return fault
            if self._persistent is not None and self._persistent.applies_to(call):
                return self._persistent
        return None

    # ---------------------------------------------------------------- records
    def reset_records(self) -> None:
        self.calls: list[Call] = []
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_cancelled = 0  # the client went away mid-stream
        self.cancel_times: list[float] = []  # monotonic, one per cancelled call
        self.chunks_sent = 0  # stream events written, all calls

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def chat_calls(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST"]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Poll `condition` (e.g. `lambda: fake.streams_cancelled == 1`) until true;
        raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: condition not met within {timeout}s")
            await asyncio.sleep(0.005)

    async def _record(self, request: web.Request, protocol: str) -> Call:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if protocol == W.OLLAMA:
            stream = not (isinstance(body, dict) and body.get("stream") is False)
        else:
            stream = isinstance(body, dict) and body.get("stream") is True
        call = Call(
            index=len(self.calls),
            protocol=protocol,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=body,
            started=time.monotonic(),
            stream=stream and request.method == "POST",
        )
        self.calls.append(call)
        return call

    # --------------------------------------------------------------- handlers
    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, W.OPENAI)

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, W.AZURE)

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, W.OLLAMA)

    async def _openai_models(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request, W.OPENAI)
        if (denied := self._check_auth(request, W.OPENAI)) is not None:
            return self._finish(call, denied)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": self.name}
                for m in self.models or ["fake-model"]]
        return self._finish(call, web.json_response({"object": "list", "data": data}))

    async def _ollama_tags(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request, W.OLLAMA)
        return self._finish(call, web.json_response(W.ollama_tags(self.models or ["fake-model"])))

    async def _chat(self, request: web.Request, protocol: str) -> web.StreamResponse:
        call = await self._record(request, protocol)
        try:
            return await self._serve(request, call)
        except (asyncio.CancelledError, ConnectionResetError):
            if call.outcome != "aborted":  # not our own reset: the client went away
                call.cancelled_at = time.monotonic()
                self.cancel_times.append(call.cancelled_at)
                if call.outcome == "streaming":
                    self.streams_cancelled += 1
                call.outcome = "cancelled"
            call.ended = time.monotonic()
            raise

    async def _serve(self, request: web.Request, call: Call) -> web.StreamResponse:
        fault = call.fault = self._pick_fault(call)
        kind = fault.kind if fault else None
        delay = self.latency + (fault.delay if kind == F.SLOW_HEADERS else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == F.RESET:
            return await self._abort(request, call)
        if kind == F.ERROR:
            return self._finish(call, self._fault_response(call.protocol, fault))
        if kind == F.MALFORMED_JSON:
            broken = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
            return self._finish(call, web.Response(status=200, body=broken, content_type="application/json"))
        if (rejected := self._validate(request, call)) is not None:
            return self._finish(call, rejected)

        body: dict[str, Any] = call.body
        model = body.get("model") or request.match_info.get("deployment") or "fake-model"
        text = self._reply_text(body, fault)
        prompt_tokens = W.estimate_tokens(W.message_text(body.get("messages")))
        completion_tokens = W.estimate_tokens(text)
        created = int(time.time())
        if kind == F.ERROR_FIRST_EVENT:
            return await self._error_first_event(request, call, str(fault.body))
        if call.protocol == W.OLLAMA:
            created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            done = W.ollama_done(model=model, created_at=created_at, content="",
                                 prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            if not call.stream:
                done["message"]["content"] = text
                return await self._send_body(request, call, W.ndjson(done)[:-1], "application/json")
            events = [(_CONTENT, W.ndjson(W.ollama_message(model=model, created_at=created_at, content=p)))
                      for p in self._pieces(text, fault)]
            events.append((_POST, W.ndjson(done)))
            return await self._send_stream(request, call, events, "application/x-ndjson")

        cid = f"chatcmpl-{self.name}-{call.index}"
        usage = W.usage(prompt_tokens, completion_tokens)
        if not call.stream:
            obj = W.completion(call.protocol, cid=cid, created=created, model=model, content=text, usage_=usage)
            return await self._send_body(request, call, json.dumps(obj).encode(), "application/json")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return W.sse(W.chunk(call.protocol, cid=cid, created=created, model=model,
                                 delta=delta, finish_reason=finish))

        events: list[tuple[int, bytes]] = []
        if call.protocol == W.AZURE:
            events.append((_PRE, W.sse(W.azure_prompt_filter_chunk())))
        events.append((_PRE, chunk({"role": "assistant", "content": ""})))
        events += [(_CONTENT, chunk({"content": p})) for p in self._pieces(text, fault)]
        events.append((_POST, chunk({}, "stop")))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append((_POST, W.sse(W.usage_chunk(cid=cid, created=created, model=model, usage_=usage))))
        events.append((_POST, W.DONE_EVENT))
        return await self._send_stream(request, call, events, "text/event-stream")

    # ------------------------------------------------------------- validation
    def _validate(self, request: web.Request, call: Call) -> web.Response | None:
        protocol, body = call.protocol, call.body
        if protocol == W.AZURE and not request.query.get("api-version"):
            return _json(400, W.azure_error(
                400, "Missing required query parameter 'api-version'.", "BadRequest"))
        if (denied := self._check_auth(request, protocol)) is not None:
            return denied
        if not isinstance(body, dict):
            message = "We could not parse the JSON body of your request."
            return _json(400, W.error_body(protocol, 400, message))
        if protocol == W.AZURE:
            deployment = request.match_info["deployment"]
            if self.models is not None and deployment not in self.models:
                return _json(404, W.azure_error(
                    404, "The API deployment for this resource does not exist. If you created the "
                    "deployment within the last 5 minutes, please wait a moment and try again.",
                    "DeploymentNotFound"))
        else:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                message = "model is required" if protocol == W.OLLAMA else "you must provide a model parameter"
                return _json(400, W.error_body(protocol, 400, message))
            if self.models is not None and model not in self.models:
                if protocol == W.OLLAMA:
                    return _json(404, W.ollama_error(f"model '{model}' not found"))
                return _json(404, W.openai_error(
                    404, f"The model `{model}` does not exist or you do not have access to it."))
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            return _json(400, W.error_body(protocol, 400, "'messages' must be a list of messages with a role"))
        return None

    def _check_auth(self, request: web.Request, protocol: str) -> web.Response | None:
        if protocol == W.OLLAMA:
            return None  # Ollama has no authentication
        bearer = request.headers.get("Authorization", "")
        token = bearer[7:] if bearer[:7].lower() == "bearer " else None
        if protocol == W.AZURE:
            if request.headers.get("api-key") == self.api_key or (token and token == self.entra_token):
                return None
            return _json(401, W.azure_error(401))
        if token == self.api_key:
            return None
        return _json(401, W.openai_error(401, "Incorrect API key provided."))

    # ---------------------------------------------------------------- replies
    def _reply_text(self, body: dict[str, Any], fault: Fault | None) -> str:
        if fault is not None and fault.kind == F.HUGE:
            unit = f"[{self.name}] lorem ipsum dolor sit amet. "
            return (unit * (fault.size // len(unit) + 1))[: fault.size]
        if callable(self.reply):
            return self.reply(body)
        if isinstance(self.reply, str):
            return self.reply
        return W.default_reply(self.name, body)

    def _pieces(self, text: str, fault: Fault | None) -> list[str]:
        n = self.chunks
        if fault is not None and fault.kind == F.HUGE:
            n = max(n, -(-len(text) // _HUGE_CHUNK))
        return W.split_text(text, n)

    def _fault_response(self, protocol: str, fault: Fault) -> web.Response:
        headers = dict(fault.headers)
        if fault.body is None:
            return _json(fault.status, W.error_body(protocol, fault.status), headers)
        if isinstance(fault.body, (dict, list)):
            return _json(fault.status, fault.body, headers)
        raw = fault.body.encode() if isinstance(fault.body, str) else bytes(fault.body)
        headers.setdefault("Content-Type", "text/plain")
        return web.Response(status=fault.status, body=raw, headers=headers)

    # ---------------------------------------------------------------- writing
    def _finish(self, call: Call, response: web.Response) -> web.Response:
        call.status = response.status
        call.outcome = "completed" if response.status < 400 else "rejected"
        call.ended = time.monotonic()
        response.headers.setdefault("x-request-id", f"req-{self.name}-{call.index}")
        return response

    async def _send_body(self, request: web.Request, call: Call, data: bytes, ctype: str) -> web.StreamResponse:
        kind = call.fault.kind if call.fault else None
        if kind not in (F.RESET_MID_BODY, F.SLOW_BODY, F.STALL):
            return self._finish(call, web.Response(status=200, body=data, content_type=ctype))
        resp = web.StreamResponse(status=200, headers={"Content-Type": ctype})
        resp.content_length = len(data)
        call.status = 200
        await resp.prepare(request)
        half = len(data) // 2
        await resp.write(data[:half])
        if kind == F.RESET_MID_BODY:
            return await self._abort(request, call, resp)
        if kind == F.STALL:
            return await self._stall(request, call, resp)
        await asyncio.sleep(call.fault.delay)
        await resp.write(data[half:])
        await resp.write_eof()
        call.outcome, call.ended = "completed", time.monotonic()
        return resp

    async def _send_stream(
        self, request: web.Request, call: Call, events: list[tuple[int, bytes]], ctype: str
    ) -> web.StreamResponse:
        fault = call.fault
        kind = fault.kind if fault else None
        interval = fault.delay if kind == F.SLOW_BODY else self.chunk_interval
        n_content = sum(1 for pos, _ in events if pos == _CONTENT)
        trigger_at = min(fault.after_chunks, n_content) if fault else -1
        resp = web.StreamResponse(status=200, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        call.status = 200
        await resp.prepare(request)
        self.streams_started += 1
        call.outcome = "streaming"
        sent = 0  # content chunks written
        fired = False
        for pos, payload in events:
            if pos != _PRE and sent == trigger_at and not fired:
                fired = True
                if kind == F.RESET_MID_BODY:
                    return await self._abort(request, call, resp)
                if kind == F.STALL:
                    return await self._stall(request, call, resp)
                if kind == F.MALFORMED_CHUNK:
                    broken = b'{"model": "x", "message": {"content": "brok\n' if call.protocol == W.OLLAMA \
                        else b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"cont\n\n'
                    await self._write(resp, call, broken)
            if pos == _CONTENT:
                if sent and interval > 0:
                    await asyncio.sleep(interval)
                sent += 1
            await self._write(resp, call, payload)
        await resp.write_eof()
        self.streams_completed += 1
        call.outcome, call.ended = "completed", time.monotonic()
        return resp

    async def _write(self, resp: web.StreamResponse, call: Call, payload: bytes) -> None:
        await resp.write(payload)
        call.chunk_times.append(time.monotonic())
        self.chunks_sent += 1

    async def _error_first_event(self, request: web.Request, call: Call, message: str) -> web.StreamResponse:
        if call.protocol == W.OLLAMA:
            event, ctype = W.ndjson(W.ollama_error(message)), "application/x-ndjson"
        else:
            event, ctype = W.sse(W.error_body(call.protocol, 500, message)), "text/event-stream"
        if not call.stream:
            return self._finish(call, web.Response(status=200, body=event.strip(), content_type="application/json"))
        resp = web.StreamResponse(status=200, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        call.status = 200
        await resp.prepare(request)
        self.streams_started += 1
        call.outcome = "streaming"
        await self._write(resp, call, event)
        await resp.write_eof()
        self.streams_completed += 1
        call.outcome, call.ended = "completed", time.monotonic()
        return resp

    async def _stall(self, request: web.Request, call: Call, resp: web.StreamResponse) -> web.StreamResponse:
        """Send nothing more, keep the connection open for at most the fault's
        `delay` (or until `stop()`), then reset it."""
        assert self._closing is not None and call.fault is not None
        try:
            await asyncio.wait_for(self._closing.wait(), call.fault.delay)
        except TimeoutError:
            pass
        return await self._abort(request, call, resp)

    async def _abort(
        self, request: web.Request, call: Call, resp: web.StreamResponse | None = None
    ) -> web.StreamResponse:
        """Reset the connection (RST, not FIN) and end the handler quietly."""
        call.outcome, call.ended = "aborted", time.monotonic()
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        await asyncio.sleep(0)  # let aiohttp notice the lost connection
        return resp if resp is not None else web.Response(status=500)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.fakes.llm --port 8081 --name primary --key k1`"""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="fake")
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--model", action="append", help="serve only these models (repeatable)")
    parser.add_argument("--reply")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--chunk-interval", type=float, default=0.0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=3600.0, help="exit after this long")
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeLLM(args.name, api_key=args.key, models=args.model, reply=args.reply,
                       chunks=args.chunks, chunk_interval=args.chunk_interval,
                       latency=args.latency, port=args.port)
        async with fake:
            print(f"{fake.name}: OpenAI {fake.openai_base_url}  Azure {fake.azure_endpoint}  "
                  f"Ollama {fake.ollama_endpoint}  (key {fake.api_key})", flush=True)
            await asyncio.sleep(args.seconds)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
