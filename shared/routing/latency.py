"""Observed latency per provider (exponentially weighted), for the latency strategy."""

from __future__ import annotations


class LatencyTracker:
    """Per-instance EWMA of successful attempt latency, in milliseconds."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self._ewma: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def observe(self, provider: str, latency_ms: float) -> None:
        prev = self._ewma.get(provider)
        self._ewma[provider] = latency_ms if prev is None else prev + self.alpha * (latency_ms - prev)
        self._count[provider] = self._count.get(provider, 0) + 1

    def get(self, provider: str) -> float | None:
        return self._ewma.get(provider)

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {p: {"ewma_ms": round(v, 2), "samples": self._count[p]} for p, v in self._ewma.items()}
