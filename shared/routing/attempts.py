"""The attempt log of one request: which providers were tried, in order, and why each was left."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.providers.base import ProviderError

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def header_safe(value: str, limit: int = 1024) -> str:
    """Printable ASCII only (no CR/LF: no header injection), bounded length."""
    if value.isascii() and value.isprintable():
        return value[:limit]
    return _UNSAFE.sub("?", value)[:limit]


@dataclass(slots=True)
class Attempt:
    provider: str
    outcome: str  # ok | failed | skipped | rejected | interrupted | cancelled
    reason: str = ""
    status: int | None = None
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"provider": self.provider, "outcome": self.outcome}
        if self.reason:
            d["reason"] = self.reason
        if self.status is not None:
            d["status"] = self.status
        if self.latency_ms is not None:
            d["latency_ms"] = round(self.latency_ms, 2)
        return d

    def short(self) -> str:
        return describe(self.to_dict())


def describe(attempt: dict[str, Any]) -> str:
    """`provider:outcome(reason)`, as in the X-LLM-Attempts header and error messages."""
    reason = attempt.get("reason")
    return f"{attempt['provider']}:{attempt['outcome']}" + (f"({reason})" if reason else "")


def failure_reason(err: ProviderError) -> str:
    return f"{err.kind} {err.status}" if err.status else err.kind


def failure_class(err: ProviderError) -> str:
    return f"http_{err.status}" if err.status else err.kind

