"""What the router reports as it works: the seam to telemetry and the usage ledger."""

from __future__ import annotations

from typing import Any, Protocol


class Observer(Protocol):
    def attempt_failed(self, provider: str, error_class: str, latency_s: float, status: int | None) -> None: ...

    def failover(self, from_provider: str, to_provider: str, reason: str) -> None: ...

    def completed(self, **fields: Any) -> None:
        """One call per request: provider, model, task_type, strategy, status, latency_ms,
        ttft_ms, prompt_tokens, completion_tokens, cost_usd, estimated, stream, request_id."""
        ...


class NullObserver:
    def attempt_failed(self, provider: str, error_class: str, latency_s: float, status: int | None) -> None:
        pass

    def failover(self, from_provider: str, to_provider: str, reason: str) -> None:
        pass

    def completed(self, **fields: Any) -> None:
        pass


NULL_OBSERVER = NullObserver()
