"""Prices, costs, and token estimates for providers that report no usage.

Prices are US dollars per 1,000 tokens, separately for input (prompt) and output
(completion). When a provider's response carries no `usage`, the gateway estimates
tokens (about four characters a token) and marks the usage record `estimated=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, per message
REPLY_PRIMING_TOKENS = 3  # the assistant turn the model is primed with


@dataclass(frozen=True)
class Price:
    """US dollars per 1,000 input tokens and per 1,000 output tokens."""

    input_per_1k: float
    output_per_1k: float

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Price.{name} must be a finite number >= 0, got {value!r}")


def cost_usd(price: Price, prompt_tokens: int, completion_tokens: int) -> float:
    """What `prompt_tokens` in and `completion_tokens` out cost at `price`."""
    return (max(prompt_tokens, 0) * price.input_per_1k + max(completion_tokens, 0) * price.output_per_1k) / 1000.0


def estimate_tokens(text: str) -> int:
    """About one token per four characters; at least 1 for non-empty text."""
    if not text:
        return 0
    return max(1, (len(text) + 3) // 4)


def estimate_prompt_tokens(messages: Iterable[Any]) -> int:
    """Estimate the prompt tokens of OpenAI-style chat `messages`.

    Counts string contents and the `text` of content parts (other parts, such as
    images, are not counted), the optional `name`, plus a small per-message overhead.
    """
    total = 0
    count = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        count += 1
        total += MESSAGE_OVERHEAD_TOKENS
        total += _content_tokens(message.get("content"))
        name = message.get("name")
        if isinstance(name, str):
            total += estimate_tokens(name)
    return total + REPLY_PRIMING_TOKENS if count else 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                total += estimate_tokens(part["text"])
        return total
    return 0
