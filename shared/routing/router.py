"""The routing provider: plans a request, then tries candidates in order with failover.

It implements the same `ChatProvider` protocol as a single provider (`complete`,
`stream`), so code written against one provider works unchanged against it.
Completions carry their routing decision under a `route` key.
"""

from __future__ import annotations

import os
import time
from typing import Any, AsyncIterator, Callable, Mapping

from shared.config import GatewayConfig
from shared.errors import AllProvidersFailed, GatewayError, UpstreamRejected
from shared.providers.base import AUTH, ChatProvider, ChatRequest, Chunk, Completion, ProviderError

from .attempts import Attempt
from .costing import completion_usage, cost_of
from .latency import LatencyTracker
from .observer import NULL_OBSERVER, Observer
from .planner import Decision, Planner
from .streaming import RoutedStream, open_candidate_stream
from .walk import CandidateWalk


class Router:
    name = "router"

    def __init__(
        self,
        config: GatewayConfig,
        providers: Mapping[str, ChatProvider],
        breakers: Any,
        planner: Planner,
        latency: LatencyTracker,
        *,
        observer: Observer = NULL_OBSERVER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.providers = providers
        self.breakers = breakers
        self.planner = planner
        self.latency = latency
        self.observer = observer
        self.clock = clock

    # -- decision only ---------------------------------------------------------
    def decide(self, request: ChatRequest) -> Decision:
        return self.planner.plan(request)

    # -- ChatProvider --------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        request.request_id = request.request_id or os.urandom(16).hex()
        decision = self.decide(request)
        walk = CandidateWalk(self, request, decision)
        name, admission, result, t0 = await walk.first_success(
            lambda provider: self._call(provider, request), lambda name, remaining: remaining, "deadline")
        elapsed = walk.elapsed_ms(t0)
        await self.breakers.record(admission, ok=True, latency=elapsed / 1000)
        self.latency.observe(name, elapsed)
        walk.succeeded(name, elapsed)
        return self._finish_ok(request, decision, walk.attempts, name, result, walk.started)

    async def _call(self, provider: ChatProvider, request: ChatRequest) -> Completion:
        try:
            return await provider.complete(request)
        except ProviderError as err:
            # Key rotation: re-read the secret once; retry only if it changed.
            auth = getattr(provider, "auth", None)
            if err.kind == AUTH and auth is not None and await auth.rotate():
                return await provider.complete(request)
            raise

    async def open_stream(self, request: ChatRequest) -> RoutedStream:
        """Fail over until a provider produces its first content token, then commit to it."""
        return await open_candidate_stream(self, request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        routed = await self.open_stream(request)
        try:
            async for chunk in routed:
                yield chunk
        finally:
            await routed.aclose()

    # -- bookkeeping -------------------------------------------------------------
    def _finish_ok(self, request, decision, attempts, name, result, started) -> Completion:
        pcfg = self.config.providers[name]
        usage, estimated = completion_usage(result, decision.shape)
        cost = cost_of(pcfg, usage)
        latency_ms = (self.clock() - started) * 1000
        result["route"] = route_info(decision, attempts, pcfg.name, pcfg.model, request.request_id, cost, estimated)
        add_ignored_params(result["route"], pcfg, request)
        self.observer.completed(
            request_id=request.request_id, provider=name, model=pcfg.model, task_type=decision.task_type,
            strategy=decision.strategy, status=200, latency_ms=latency_ms, ttft_ms=None,
            prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
            cost_usd=cost, estimated=estimated, stream=False,
            candidates=decision.candidates, confidence=decision.confidence,
        )
        return result

    def finish_failed(self, request, decision, status, started) -> None:
        self.observer.completed(
            request_id=request.request_id, provider=None, model=None, task_type=decision.task_type,
            strategy=decision.strategy, status=status, latency_ms=(self.clock() - started) * 1000, ttft_ms=None,
            prompt_tokens=0, completion_tokens=0, cost_usd=0.0, estimated=False, stream=request.stream,
            candidates=decision.candidates, confidence=decision.confidence,
        )


def add_ignored_params(info: dict[str, Any], provider_config, request: ChatRequest) -> None:
    from shared.providers.registry import ignored_params

    ignored = ignored_params(provider_config, request.params)
    if ignored:
        info["ignored_params"] = ignored


def route_info(decision: Decision, attempts: list[Attempt], provider, model, request_id, cost, estimated) -> dict[str, Any]:
    info: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "task_type": decision.task_type,
        "task_source": decision.task_source,
        "confidence": round(decision.confidence, 3),
        "strategy": decision.strategy,
        "route": decision.route,
        "candidates": list(decision.candidates),
        "attempts": [a.to_dict() for a in attempts],
    }
    if request_id:
        info["request_id"] = request_id
    if cost is not None:
        info["cost_usd"] = round(cost, 8)
        info["cost_estimated"] = bool(estimated)
    return info


def all_failed(decision: Decision, attempts: list[Attempt], retry_after: float | None) -> AllProvidersFailed:
    detail = "; ".join(a.short() for a in attempts) or "no candidates"
    headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if retry_after else {}
    return AllProvidersFailed(
        f"every candidate provider failed or was unavailable: {detail}",
        headers=headers,
        extra={"route": route_info(decision, attempts, None, None, None, None, None)},
    )


def rejected(err: ProviderError, decision: Decision, attempts: list[Attempt]) -> GatewayError:
    """A provider's non-retryable 4xx goes back to the caller as it is."""
    body_err = (err.body or {}).get("error") if isinstance(err.body, dict) else None
    if isinstance(body_err, dict):
        message = str(body_err.get("message") or err.message)
        code = body_err.get("code")
        param = body_err.get("param")
        etype = body_err.get("type")
    else:
        message, code, param, etype = err.message, None, None, None
    exc = UpstreamRejected(
        message, param=param if isinstance(param, str) else None,
        code=str(code) if code else "upstream_rejected", status=err.status or 400,
        extra={"route": route_info(decision, attempts, err.provider, None, None, None, None)},
    )
    if isinstance(etype, str):
        exc.type = etype
    return exc
