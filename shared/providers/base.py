"""The provider protocol every model backend implements, and its value types.

A single provider, a breaker-wrapped provider and the routing provider all
implement `ChatProvider`, so code written against one works against the router.
Completions and chunks are plain dicts in the OpenAI wire format
(`chat.completion` / `chat.completion.chunk`): cheap to pass through and exactly
what callers receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable

Completion = dict[str, Any]
Chunk = dict[str, Any]


@dataclass(slots=True)
class ChatRequest:
    """A validated OpenAI chat request, minus the gateway's own routing hints."""

    messages: list[dict[str, Any]]
    model: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    """Sampling params (temperature, max_tokens, top_p, stop, user) and any other
    OpenAI field the caller sent; forwarded to OpenAI-kind providers as-is."""
    stream: bool = False
    include_usage: bool = False
    """The caller asked for the final usage chunk (`stream_options.include_usage`)."""
    task_type: str | None = None
    """Routing hint: force the task type (the `X-Task-Type` header or `task_type` field)."""
    strategy: str | None = None
    """Routing hint: the strategy for this request (the `X-Routing-Strategy` header)."""
    request_id: str | None = None


# Failure kinds. Everything but "rejected" and "auth" is retryable on another
# candidate and counts against the provider's breaker.
CONNECT = "connect_error"
TIMEOUT = "timeout"
STATUS = "http_status"
PROTOCOL = "protocol_error"
STREAM_BROKEN = "stream_broken"
TOO_LARGE = "response_too_large"
REJECTED = "rejected"  # a non-retryable 4xx caused by the caller's request
AUTH = "auth"  # 401/403 from the provider: our key is wrong or rotated
UNAVAILABLE = "unavailable"  # not attempted: secret unresolved, breaker open, ...

RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


class ProviderError(Exception):
    """A provider call failed. `message` never contains secrets or prompt text."""

    def __init__(
        self,
        provider: str,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body

    @property
    def retryable(self) -> bool:
        """Another candidate may succeed where this one failed."""
        return self.kind not in (REJECTED,)

    @property
    def counts_as_failure(self) -> bool:
        """Whether the provider's circuit breaker should count this failure."""
        return self.kind not in (REJECTED, AUTH, UNAVAILABLE)


def kind_for_status(status: int) -> str:
    if status in RETRYABLE_STATUS:
        return STATUS
    if status in (401, 403):
        return AUTH
    return REJECTED


@runtime_checkable
class ChatProvider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...
