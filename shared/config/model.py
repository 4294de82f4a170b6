"""The routing configuration as frozen value objects (built by `loader`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

STRATEGIES = ("cost", "quality", "latency")
PROVIDER_KINDS = ("azure_openai", "openai", "ollama")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_seconds: float
    first_byte_seconds: float
    total_seconds: float
    stream_idle_seconds: float


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    endpoint: str
    model: str
    timeouts: Timeouts
    price: Price
    quality: float
    premium: bool
    expected_latency_ms: float
    auth: str
    api_key_secret: str | None = None
    deployment: str | None = None
    api_version: str = "2024-10-21"
    fallbacks: tuple[str, ...] = ()
    breaker: Mapping[str, Any] = field(default_factory=dict)
    """Breaker settings for this provider: top-level defaults merged with its overrides."""
    enabled: bool = True

    def public_view(self) -> dict[str, Any]:
        """What `GET /api/routing/routes` shows: names of secrets, never values."""
        view: dict[str, Any] = {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "model": self.model,
            "auth": self.auth,
            "price": {"input_per_1k": self.price.input_per_1k, "output_per_1k": self.price.output_per_1k},
            "quality": self.quality,
            "premium": self.premium,
            "enabled": self.enabled,
        }
        if self.deployment:
            view["deployment"] = self.deployment
            view["api_version"] = self.api_version
        if self.api_key_secret:
            view["api_key_secret"] = self.api_key_secret
        if self.fallbacks:
            view["fallbacks"] = list(self.fallbacks)
        return view


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    candidates: tuple[str, ...]
    strategy: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_messages: int
    max_total_chars: int
    max_tokens: int
    total_timeout_seconds: float
    max_response_bytes: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class LowConfidence:
    threshold: float
    route: str


@dataclass(frozen=True, slots=True)
class Escalation:
    task_types: tuple[str, ...]
    min_probability: float


@dataclass(frozen=True, slots=True)
class CostConfig:
    baseline_provider: str | None
    max_report_days: int


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    source: str
    providers: Mapping[str, ProviderConfig]
    routes: Mapping[str, RouteConfig]
    default_strategy: str
    limits: Limits
    secrets: Mapping[str, Any]
    cost: CostConfig
    low_confidence: LowConfidence | None = None
    escalation: Escalation | None = None
    description: str | None = None

    def route_for_task(self, task_type: str) -> RouteConfig:
        return self.routes.get(task_type) or self.routes["default"]
