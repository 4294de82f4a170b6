"""The router's observer: named telemetry events plus one usage-ledger record per request."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.telemetry import events
from shared.usage.ledger import UsageRecord


class GatewayObserver:
    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def attempt_failed(self, provider: str, error_class: str, latency_s: float, status: int | None) -> None:
        events.attempt_failed(provider=provider, error_class=error_class, latency_s=latency_s, status=status)

    def failover(self, from_provider: str, to_provider: str, reason: str) -> None:
        events.failover(from_provider=from_provider, to_provider=to_provider, reason=reason)

    def completed(self, *, request_id, provider, model, task_type, strategy, status, latency_ms, ttft_ms,
                  prompt_tokens, completion_tokens, cost_usd, estimated, stream, candidates=(), confidence=None,
                  **_: Any) -> None:
        events.route_decided(task_type=task_type, strategy=strategy, candidates=candidates, chosen=provider,
                             confidence=confidence)
        events.request_completed(
            provider=provider, model=model, task_type=task_type, status=status, latency_s=latency_ms / 1000,
            ttft_s=(ttft_ms / 1000) if ttft_ms is not None else None, tokens_in=prompt_tokens,
            tokens_out=completion_tokens, cost_usd=cost_usd, estimated=estimated, stream=stream,
        )
        self.ledger.record(UsageRecord(
            request_id=request_id or "", time=datetime.now(timezone.utc), provider=provider or "",
            model=model or "", task_type=task_type, prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens), cost_usd=float(cost_usd), estimated=bool(estimated),
            latency_ms=int(latency_ms), ttft_ms=int(ttft_ms) if ttft_ms is not None else None, status=int(status),
            stream=bool(stream), strategy=strategy,
        ))
