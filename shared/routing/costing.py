"""Token usage and cost of one completion (reported usage, or an estimate flagged as such)."""

from __future__ import annotations

from typing import Any

from shared.config import ProviderConfig

from shared.usage.pricing import cost_usd

from .strategies import RequestShape


def _tokens(usage: Any) -> tuple[int, int] | None:
    if isinstance(usage, dict):
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(p, int) and isinstance(c, int) and p >= 0 and c >= 0:
            return p, c
    return None


def stream_usage(usage: Any, shape: RequestShape, completion_chars: int) -> tuple[dict[str, int], bool]:
    """The provider's reported usage, or an estimate (flagged True) from the request's shape
    and the completion's length."""
    reported = _tokens(usage)
    if reported:
        return {"prompt_tokens": reported[0], "completion_tokens": reported[1]}, False
    completion = max(1, completion_chars // 4) if completion_chars else 0
    return {"prompt_tokens": shape.prompt_tokens, "completion_tokens": completion}, True


def completion_usage(result: dict[str, Any], shape: RequestShape) -> tuple[dict[str, int], bool]:
    chars = 0
    for choice in result.get("choices") or ():
        content = (choice.get("message") or {}).get("content")
        if isinstance(content, str):
            chars += len(content)
    return stream_usage(result.get("usage"), shape, chars)


def cost_of(provider: ProviderConfig, usage: dict[str, int]) -> float:
    return cost_usd(provider.price, usage["prompt_tokens"], usage["completion_tokens"])
