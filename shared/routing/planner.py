"""The routing decision: task type, route, strategy and the ordered candidates.

Pure and synchronous (no I/O): `POST /api/v1/route` returns exactly this, and the
router executes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import STRATEGIES, GatewayConfig
from shared.errors import InvalidRequest, NotFound
from shared.providers.base import ChatRequest
from shared.usage.pricing import estimate_prompt_tokens

from .strategies import RequestShape, Strategy
from .tasks import TASK_TYPES, is_task_type

DEFAULT_COMPLETION_TOKENS = 512


@dataclass(slots=True)
class Decision:
    task_type: str
    task_source: str
    """`hint` (header or body), `detected`, or `escalated` (see the config's `escalation`)."""
    confidence: float
    strategy: str
    route: str | None
    pinned: str | None
    candidates: list[str]
    shape: RequestShape
    low_confidence: bool = False
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "task_source": self.task_source,
            "confidence": round(self.confidence, 3),
            "low_confidence": self.low_confidence,
            "strategy": self.strategy,
            "route": self.route,
            "pinned_provider": self.pinned,
            "candidates": list(self.candidates),
            "estimated_tokens": {"prompt": self.shape.prompt_tokens, "completion": self.shape.completion_tokens},
        }


def check_task_type(value: Any, param: str) -> str:
    if not is_task_type(value):
        raise InvalidRequest(
            f"unknown task type {str(value)[:64]!r}; valid task types: {', '.join(TASK_TYPES)}",
            param=param, code="invalid_task_type",
        )
    return value


def check_strategy(value: Any, param: str) -> str:
    if value not in STRATEGIES:
        raise InvalidRequest(
            f"unknown routing strategy {str(value)[:64]!r}; valid strategies: {', '.join(STRATEGIES)}",
            param=param, code="invalid_strategy",
        )
    return value


def estimate_shape(request: ChatRequest) -> RequestShape:
    prompt = estimate_prompt_tokens(request.messages)
    limit = request.params.get("max_completion_tokens") or request.params.get("max_tokens")
    completion = min(int(limit), DEFAULT_COMPLETION_TOKENS) if isinstance(limit, int) and limit > 0 else DEFAULT_COMPLETION_TOKENS
    return RequestShape(prompt, completion)


class Planner:
    def __init__(self, config: GatewayConfig, strategies: dict[str, Strategy], detect=None) -> None:
        self.config = config
        self.strategies = strategies
        if detect is None:
            from .detection import detect
        self._detect = detect

    def plan(self, request: ChatRequest) -> Decision:
        cfg = self.config
        model = request.model or "auto"
        if model != "auto" and model not in cfg.routes and model not in cfg.providers:
            raise NotFound(
                f"model {model[:100]!r} is not 'auto', a route or a provider of this gateway; "
                f"routes: {', '.join(cfg.routes)}; providers: {', '.join(cfg.providers)}",
                param="model", code="model_not_found",
            )
        if request.task_type is not None:
            task, source, confidence = check_task_type(request.task_type, "task_type"), "hint", 1.0
        else:
            det = self._detect(request.messages)
            task, source, confidence = det.task_type, "detected", float(det.confidence)
            esc = cfg.escalation
            if esc and task not in esc.task_types:
                hard = max(esc.task_types, key=det.score)
                if det.score(hard) >= esc.min_probability:
                    task, source, confidence = hard, "escalated", float(det.score(hard))
        shape = estimate_shape(request)

        pinned = None
        low = False
        if model in cfg.providers:
            pinned = model
            route = None
            names = [model, *cfg.providers[model].fallbacks]
            route_strategy = None
        else:
            if model in cfg.routes:
                route_cfg = cfg.routes[model]
            elif source == "detected" and cfg.low_confidence and confidence < cfg.low_confidence.threshold:
                route_cfg = cfg.routes[cfg.low_confidence.route]
                low = True
            else:
                route_cfg = cfg.route_for_task(task)
            route = route_cfg.name
            names = list(route_cfg.candidates)
            route_strategy = route_cfg.strategy

        strategy = (
            check_strategy(request.strategy, "X-Routing-Strategy") if request.strategy is not None
            else route_strategy or cfg.default_strategy
        )
        if pinned:
            # The pinned provider goes first; its fallbacks follow in the strategy's order.
            rest = self.strategies[strategy].order([cfg.providers[n] for n in names[1:]], shape)
            ordered = [pinned, *(p.name for p in rest)]
        else:
            ordered = [p.name for p in self.strategies[strategy].order([cfg.providers[n] for n in names], shape)]
        return Decision(task, source, confidence, strategy, route, pinned, ordered, shape, low)
