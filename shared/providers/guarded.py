"""A provider behind its circuit breaker: the same `ChatProvider` protocol, with admission
and outcome recording. Use it to call one provider with breaker protection but no routing."""

from __future__ import annotations

from typing import Any, AsyncIterator

from .base import UNAVAILABLE, ChatProvider, ChatRequest, Chunk, Completion, ProviderError


class BreakerProvider:
    def __init__(self, provider: ChatProvider, breakers: Any) -> None:
        self.provider = provider
        self.breakers = breakers
        self.name = provider.name

    async def _admit(self):
        admission = await self.breakers.admit(self.name)
        if not admission.allowed:
            raise ProviderError(self.name, UNAVAILABLE, admission.reason or f"breaker {admission.state}",
                                retry_after=admission.retry_after)
        return admission

    async def complete(self, request: ChatRequest) -> Completion:
        admission = await self._admit()
        try:
            result = await self.provider.complete(request)
        except ProviderError as err:
            await self._failed(admission, err)
            raise
        except BaseException:
            await self.breakers.release(admission)
            raise
        await self.breakers.record(admission, ok=True)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        admission = await self._admit()
        outcome = None
        try:
            async for chunk in self.provider.stream(request):
                yield chunk
            outcome = True
        except ProviderError as err:
            outcome = False
            await self._failed(admission, err)
            raise
        finally:
            if outcome is True:
                await self.breakers.record(admission, ok=True)
            elif outcome is None:
                await self.breakers.release(admission)

    async def _failed(self, admission, err: ProviderError) -> None:
        if err.counts_as_failure:
            cls = f"http_{err.status}" if err.status else err.kind
            await self.breakers.record(admission, ok=False, failure_class=cls, retry_after=err.retry_after)
        else:
            await self.breakers.release(admission)
