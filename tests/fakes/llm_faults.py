"""Faults a `FakeLLM` can inject, one value object per failure mode.

Build them with the named constructors (`Fault.error(429, retry_after=30)`,
`Fault.reset_mid_body(after_chunks=2)`, ...) and hand them to
`FakeLLM.inject(fault, times=n)` (the next n chat requests) or
`FakeLLM.set_fault(fault)` (every chat request until `clear_faults()`).
`fault.where(predicate)` narrows a fault to the requests whose `Call` record
matches, e.g. `Fault.reset().where(lambda call: call.stream)`.

"N chunks" always counts content chunks: the role chunk (and Azure's
prompt-filter event) are sent before the first one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from tests.fakes.llm import Call

ERROR = "error"  # a status code with headers and a body
RESET = "reset"  # the connection is reset before any byte of the response
RESET_MID_BODY = "reset_mid_body"  # non-stream: half the body; stream: after N chunks
SLOW_HEADERS = "slow_headers"  # `delay` seconds before the status line
SLOW_BODY = "slow_body"  # headers at once; non-stream: half, `delay`, rest; stream: `delay` between chunks
STALL = "stall"  # stop sending (connection open) for up to `delay` s, then reset
MALFORMED_JSON = "malformed_json"  # 200, application/json, truncated JSON
ERROR_FIRST_EVENT = "error_first_event"  # 200 stream whose first event is an error (non-stream: 200 + error JSON)
MALFORMED_CHUNK = "malformed_chunk"  # one unparsable event after N chunks, then the rest
HUGE = "huge"  # the reply is `size` characters long

KINDS = frozenset(
    {ERROR, RESET, RESET_MID_BODY, SLOW_HEADERS, SLOW_BODY, STALL, MALFORMED_JSON,
     ERROR_FIRST_EVENT, MALFORMED_CHUNK, HUGE}
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    """ERROR: a dict/list is sent as JSON, str/bytes as they are; None picks the
    protocol's own error body for `status`. ERROR_FIRST_EVENT: the message."""
    after_chunks: int = 0
    delay: float = 0.0
    size: int = 0
    when: Callable[["Call"], bool] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")

    def where(self, predicate: Callable[["Call"], bool]) -> "Fault":
        """The same fault, applied only to requests whose record matches."""
        return dataclasses.replace(self, when=predicate)

    def applies_to(self, call: "Call") -> bool:
        return self.when is None or bool(self.when(call))

    # ---------------------------------------------------------- constructors
    @classmethod
    def error(
        cls,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        retry_after: float | str | None = None,
    ) -> "Fault":
        h = dict(headers or {})
        if retry_after is not None:
            h["Retry-After"] = str(retry_after)
        return cls(ERROR, status=status, headers=h, body=body)

    @classmethod
    def reset(cls) -> "Fault":
        return cls(RESET)

    @classmethod
    def reset_mid_body(cls, after_chunks: int = 1) -> "Fault":
        return cls(RESET_MID_BODY, after_chunks=after_chunks)

    @classmethod
    def slow_headers(cls, delay: float) -> "Fault":
        return cls(SLOW_HEADERS, delay=delay)

    @classmethod
    def slow_body(cls, delay: float) -> "Fault":
        return cls(SLOW_BODY, delay=delay)

    @classmethod
    def stall(cls, after_chunks: int = 1, max_stall: float = 5.0) -> "Fault":
        return cls(STALL, after_chunks=after_chunks, delay=max_stall)

    @classmethod
    def malformed_json(cls) -> "Fault":
        return cls(MALFORMED_JSON)

    @classmethod
    def error_first_event(cls, message: str = "The server had an error while processing your request.") -> "Fault":
        return cls(ERROR_FIRST_EVENT, body=message)

    @classmethod
    def malformed_chunk(cls, after_chunks: int = 1) -> "Fault":
        return cls(MALFORMED_CHUNK, after_chunks=after_chunks)

    @classmethod
    def huge(cls, size: int = 5_000_000) -> "Fault":
        return cls(HUGE, size=size)
