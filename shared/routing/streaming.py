"""Streaming with failover before commit.

The gateway commits to a provider at its first content token, not its first
byte: a connection error, error status, timeout or error event before that moves
on to the next candidate, invisibly to the caller. After commit, a failure or a
stall ends the stream with `StreamInterrupted` (rendered as an error event and
`[DONE]` over HTTP) and counts against the provider's breaker.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, AsyncIterator, NoReturn, Protocol

from shared.errors import GatewayError
from shared.providers.base import AUTH, ChatRequest, Chunk, ProviderError
from shared.providers.openai_wire import has_content

from .attempts import Attempt, failure_class, failure_reason
from .costing import cost_of, stream_usage

if TYPE_CHECKING:
    from .router import Router


class StreamInterrupted(GatewayError):
    """The committed provider failed mid-stream; the caller has a partial answer."""

    status = 502
    type = "server_error"
    code = "stream_interrupted"


class RoutedStream:
    """A committed stream: route known (headers can be sent), chunks still to come."""

    def __init__(self, router: "Router", request: ChatRequest, decision, attempts, name, admission,
                 source: "ChunkSourceLike", buffered: list[Chunk], started: float, ttft: float | None,
                 exhausted: bool) -> None:
        self.router = router
        self.request = request
        self.decision = decision
        self.attempts = attempts
        self.provider = name
        self.model = router.config.providers[name].model
        self._admission = admission
        self._source = source
        self._buffered = buffered
        self._started = started
        self._ttft = ttft
        self._exhausted = exhausted
        self._usage: Any = None
        self._chars = 0
        self._done = False
        self.cost_usd: float | None = None
        self.cost_estimated: bool | None = None

    def route(self) -> dict[str, Any]:
        from .router import add_ignored_params, route_info

        info = route_info(self.decision, self.attempts, self.provider, self.model, self.request.request_id,
                          self.cost_usd, self.cost_estimated)
        add_ignored_params(info, self.router.config.providers[self.provider], self.request)
        return info

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        """The chunks one at a time (the Python API); closing early releases the upstream."""
        try:
            while (batch := await self.next_batch()) is not None:
                for chunk in batch:
                    yield chunk
        finally:
            await self.aclose()

    async def next_batch(self) -> list[Chunk] | None:
        """The caller's next chunks, in the groups they became available: first everything
        read before the commit (so it can leave in one write), then what each network read
        delivers, then the usage chunk when the caller asked for it; None at the end.

        A provider failure ends the stream with `StreamInterrupted` (and counts against the
        provider's breaker). A caller that stops early calls `aclose()`.
        """
        see = self._see
        if self._buffered:
            first = [out for out in map(see, self._buffered) if out is not None]
            self._buffered = []
            if first:
                return first
        while not self._exhausted:
            try:
                batch = await self._source.next_batch()
            except ProviderError as err:
                self._exhausted = True
                await self._failed(err)
            if batch is None:
                self._exhausted = True
                break
            out = [c for c in map(see, batch) if c is not None]
            if out:
                return out
        if self._done:  # the end was already handed over
            return None
        final = self._final_usage_chunk()
        await self._close("ok")
        return [final] if final is not None else None

    async def _failed(self, err: ProviderError) -> NoReturn:
        await self.router.breakers.record(self._admission, ok=False, failure_class=failure_class(err))
        self.attempts[-1] = Attempt(self.provider, "interrupted", failure_reason(err), err.status)
        self.router.observer.attempt_failed(self.provider, failure_class(err), self._elapsed(), err.status)
        await self._close("failed")
        raise StreamInterrupted(
            f"the provider stream broke after the response started: {err.message}",
            extra={"route": self.route()},
        ) from None

    def _see(self, chunk: Chunk) -> Chunk | None:
        """Track usage and text; hide the usage chunk unless the caller asked for it."""
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
            if not chunk.get("choices"):
                return None  # re-emitted at the end, with the cost, when asked for
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if isinstance(text, str):
                self._chars += len(text)
        if not self.request.include_usage:
            chunk.pop("usage", None)
        return chunk

    def _settle_cost(self) -> dict[str, int]:
        usage, estimated = stream_usage(self._usage, self.decision.shape, self._chars)
        self.cost_usd = cost_of(self.router.config.providers[self.provider], usage)
        self.cost_estimated = estimated
        return usage

    def _final_usage_chunk(self) -> Chunk | None:
        usage = self._settle_cost()
        if not self.request.include_usage:
            return None
        return {
            "id": f"chatcmpl-{self.request.request_id}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "choices": [],
            "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
            "x_llm": {"cost_usd": round(self.cost_usd or 0.0, 8), "cost_estimated": self.cost_estimated,
                      "provider": self.provider, "model": self.model},
        }

    def _elapsed(self) -> float:
        return self.router.clock() - self._started

    async def _close(self, outcome: str) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._source.close()
        except Exception:
            pass
        router = self.router
        if outcome == "ok":
            await router.breakers.record(self._admission, ok=True, latency=self._elapsed())
            router.latency.observe(self.provider, (self._ttft or self._elapsed()) * 1000)
            status = 200
        elif outcome == "cancelled":
            await router.breakers.release(self._admission)
            self.attempts[-1] = Attempt(self.provider, "cancelled", "caller disconnected")
            status = 499
        else:
            status = 502
        usage = self._settle_cost()
        router.observer.completed(
            request_id=self.request.request_id, provider=self.provider, model=self.model,
            task_type=self.decision.task_type, strategy=self.decision.strategy, status=status,
            latency_ms=self._elapsed() * 1000, ttft_ms=(self._ttft * 1000) if self._ttft is not None else None,
            prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
            cost_usd=self.cost_usd or 0.0, estimated=bool(self.cost_estimated), stream=True,
            candidates=self.decision.candidates, confidence=self.decision.confidence,
        )

    async def aclose(self) -> None:
        """Release the upstream when the stream is abandoned before or during iteration
        (a no-op once the stream ended)."""
        await self._close("ok" if self._exhausted and not self._buffered else "cancelled")


async def open_candidate_stream(router: "Router", request: ChatRequest) -> RoutedStream:
    from .walk import CandidateWalk

    request.request_id = request.request_id or os.urandom(16).hex()
    decision = router.decide(request)
    walk = CandidateWalk(router, request, decision)
    name, admission, (source, buffered, exhausted), t0 = await walk.first_success(
        lambda provider: _until_first_token(provider, request),
        lambda name, remaining: min(remaining, router.config.providers[name].timeouts.total_seconds),
        "no first token in time")
    ttft = router.clock() - t0
    walk.succeeded(name, ttft * 1000)
    return RoutedStream(router, request, decision, walk.attempts, name, admission, source, buffered,
                        walk.started, ttft, exhausted)


class ChunkSourceLike(Protocol):
    """What the router reads a provider stream through (`shared.providers.http_provider.ChunkSource`)."""

    async def next_batch(self) -> list[Chunk] | None: ...

    async def close(self) -> None: ...


class _GeneratorSource:
    """Any provider's `stream()` as a source, a chunk at a time (HTTP providers have a
    faster one: `open_source`)."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: AsyncIterator[Chunk]) -> None:
        self._chunks = chunks

    async def next_batch(self) -> list[Chunk] | None:
        try:
            return [await anext(self._chunks)]
        except StopAsyncIteration:
            return None

    async def close(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


async def _open_source(provider, request: ChatRequest) -> ChunkSourceLike:
    opener = getattr(provider, "open_source", None)
    if opener is not None:
        return await opener(request)
    return _GeneratorSource(provider.stream(request))


async def _until_first_token(provider, request: ChatRequest) -> tuple[ChunkSourceLike, list[Chunk], bool]:
    """Open the provider stream and read until its first content token (or its end)."""
    for attempt in (1, 2):
        source: ChunkSourceLike | None = None
        buffered: list[Chunk] = []
        try:
            source = await _open_source(provider, request)
            while True:
                batch = await source.next_batch()
                if batch is None:
                    return source, buffered, True
                buffered += batch
                if any(map(has_content, batch)):
                    return source, buffered, False
        except ProviderError as err:
            if source is not None:
                await source.close()
            auth = getattr(provider, "auth", None)
            if attempt == 1 and err.kind == AUTH and auth is not None and await auth.rotate():
                continue
            raise
        except BaseException:
            if source is not None:
                await source.close()
            raise
    raise AssertionError("unreachable")
