"""Strategies order a route's candidates. Each is a small class with one method,
registered by name; new ones plug in through `STRATEGIES`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from shared.config import ProviderConfig

from .latency import LatencyTracker


@dataclass(frozen=True, slots=True)
class RequestShape:
    """What a strategy may know about the request: estimated token counts."""

    prompt_tokens: int
    completion_tokens: int


def estimated_cost(p: ProviderConfig, shape: RequestShape) -> float:
    return (p.price.input_per_1k * shape.prompt_tokens + p.price.output_per_1k * shape.completion_tokens) / 1000.0


class Strategy(Protocol):
    name: str

    def order(self, candidates: Sequence[ProviderConfig], shape: RequestShape) -> list[ProviderConfig]: ...


class CostStrategy:
    """Cheapest estimated cost first; ties go to the better model, then config order."""

    name = "cost"

    def order(self, candidates, shape):
        return sorted(candidates, key=lambda p: (estimated_cost(p, shape), -p.quality))


class QualityStrategy:
    """Best quality score first; ties go to the cheaper model."""

    name = "quality"

    def order(self, candidates, shape):
        return sorted(candidates, key=lambda p: (-p.quality, estimated_cost(p, shape)))


class LatencyStrategy:
    """Fastest observed first (the configured expectation until observed); ties by cost."""

    name = "latency"

    def __init__(self, tracker: LatencyTracker) -> None:
        self.tracker = tracker

    def order(self, candidates, shape):
        def key(p: ProviderConfig):
            seen = self.tracker.get(p.name)
            return (seen if seen is not None else p.expected_latency_ms, estimated_cost(p, shape))

        return sorted(candidates, key=key)


def build_strategies(tracker: LatencyTracker) -> dict[str, Strategy]:
    return {"cost": CostStrategy(), "quality": QualityStrategy(), "latency": LatencyStrategy(tracker)}
