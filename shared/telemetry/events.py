"""The gateway's named telemetry events, all in one place.

Each event is a small function taking keyword arguments only. An event becomes
  * a span event on the current recording span, or a short span of its own
    (`gateway.<event>`) when there is none (a child of the Functions host's
    trace context when the worker propagated one);
  * a log record on the `gateway.events` logger, with the attributes in `extra`;
  * metric points (histograms for latency and time to first token; counters for
    requests, failures, tokens, cost), by provider, model and task type.

Privacy by construction: no function accepts prompt or completion text, headers
or secrets. Every string attribute is checked against an identifier pattern
(letters, digits and `._:/@+-`, at most 64 characters); anything else is exported
as `"redacted"`. Numbers are coerced to finite, non-negative values.

Cold start: only the OpenTelemetry *API* is used, and it is imported on the first
event, not at module import (about 45 ms on its own, 15-20 ms in a warm process).
Without a configured SDK the API is a no-op. Telemetry never raises into callers.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "ATTRIBUTE_KEYS",
    "REDACTED",
    "attempt_failed",
    "breaker_transition",
    "failover",
    "request_completed",
    "route_decided",
    "use_providers",
]

logger = logging.getLogger("gateway.events")

INSTRUMENTATION_NAME = "gateway"
REDACTED = "redacted"
MAX_CANDIDATES = 16
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,63}")

# Every attribute key any event may export (spans, span events, logs, metrics).
ATTRIBUTE_KEYS: frozenset[str] = frozenset(
    {
        "gateway.event",
        "gateway.task_type",
        "gateway.strategy",
        "gateway.candidates",
        "gateway.candidate_count",
        "gateway.chosen",
        "gateway.confidence",
        "gateway.provider",
        "gateway.model",
        "gateway.error_class",
        "gateway.latency_s",
        "gateway.ttft_s",
        "gateway.status",
        "gateway.from_provider",
        "gateway.to_provider",
        "gateway.reason",
        "gateway.from_state",
        "gateway.to_state",
        "gateway.cause",
        "gateway.tokens_in",
        "gateway.tokens_out",
        "gateway.cost_usd",
        "gateway.estimated",
        "gateway.stream",
    }
)


# --------------------------------------------------------------------------- events


def route_decided(
    *,
    task_type: str,
    strategy: str,
    candidates: Iterable[str],
    chosen: str | None,
    confidence: float | None = None,
) -> None:
    """The router picked `chosen` (None: nothing eligible) from `candidates`."""
    if _silent(logging.DEBUG):
        return
    cands = tuple(_ident(c) for c in list(candidates)[:MAX_CANDIDATES])
    attrs = _attrs(
        task_type=_ident(task_type),
        strategy=_ident(strategy),
        candidates=cands,
        candidate_count=len(cands),
        chosen=_ident(chosen),
        confidence=_num(confidence),
    )

    def metrics(m: _Instruments) -> None:
        m.route_decisions.add(1, _pick(attrs, "task_type", "strategy", "chosen"))

    # Per-request successes log at DEBUG: spans and metrics carry them; logs are for trouble.
    _emit("route_decided", attrs, logging.DEBUG, metrics)


def attempt_failed(
    *,
    provider: str,
    error_class: str,
    latency_s: float | None,
    status: int | None = None,
) -> None:
    """One attempt at `provider` failed (timeout, connection error, 429, 5xx...)."""
    attrs = _attrs(
        provider=_ident(provider),
        error_class=_ident(error_class),
        latency_s=_num(latency_s),
        status=_int(status),
    )

    def metrics(m: _Instruments) -> None:
        m.attempt_failures.add(1, _pick(attrs, "provider", "error_class", "status"))

    _emit("attempt_failed", attrs, logging.WARNING, metrics)


def failover(*, from_provider: str, to_provider: str | None, reason: str) -> None:
    """The router moved on from `from_provider` to `to_provider` (None: no candidate left)."""
    attrs = _attrs(
        from_provider=_ident(from_provider),
        to_provider=_ident(to_provider),
        reason=_ident(reason),
    )

    def metrics(m: _Instruments) -> None:
        m.failovers.add(1, _pick(attrs, "from_provider", "to_provider", "reason"))

    _emit("failover", attrs, logging.WARNING, metrics)


def breaker_transition(*, provider: str, from_state: Any, to_state: Any, cause: str) -> None:
    """A provider's circuit breaker changed state (closed/open/half_open/isolated)."""
    attrs = _attrs(
        provider=_ident(provider),
        from_state=_ident(from_state),
        to_state=_ident(to_state),
        cause=_ident(cause),
    )
    level = logging.WARNING if attrs["gateway.to_state"] in ("open", "isolated") else logging.INFO

    def metrics(m: _Instruments) -> None:
        m.breaker_transitions.add(1, _pick(attrs, "provider", "from_state", "to_state"))

    _emit("breaker_transition", attrs, level, metrics)


def request_completed(
    *,
    provider: str | None,
    model: str | None,
    task_type: str,
    status: int,
    latency_s: float,
    ttft_s: float | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: float = 0.0,
    estimated: bool = False,
    stream: bool = False,
) -> None:
    """A gateway request finished (successfully or not), after any failovers."""
    if isinstance(status, int) and status < 400 and _silent(logging.DEBUG):
        return
    attrs = _attrs(
        provider=_ident(provider),
        model=_ident(model),
        task_type=_ident(task_type),
        status=_int(status),
        latency_s=_num(latency_s),
        ttft_s=_num(ttft_s),
        tokens_in=_int(tokens_in) or 0,
        tokens_out=_int(tokens_out) or 0,
        cost_usd=_num(cost_usd) or 0.0,
        estimated=bool(estimated),
        stream=bool(stream),
    )
    failed = (attrs.get("gateway.status") or 0) >= 400

    def metrics(m: _Instruments) -> None:
        dims = _pick(attrs, "provider", "model", "task_type")
        req_dims = {**dims, **_pick(attrs, "status", "stream")}
        m.requests.add(1, req_dims)
        if failed:
            m.request_failures.add(1, req_dims)
        if "gateway.latency_s" in attrs:
            m.duration.record(attrs["gateway.latency_s"], req_dims)
        if "gateway.ttft_s" in attrs:
            m.ttft.record(attrs["gateway.ttft_s"], {**dims, **_pick(attrs, "stream")})
        tok_dims = {**dims, **_pick(attrs, "estimated")}
        if attrs["gateway.tokens_in"]:
            m.tokens_in.add(attrs["gateway.tokens_in"], tok_dims)
        if attrs["gateway.tokens_out"]:
            m.tokens_out.add(attrs["gateway.tokens_out"], tok_dims)
        if attrs["gateway.cost_usd"]:
            m.cost.add(attrs["gateway.cost_usd"], tok_dims)

    _emit("request_completed", attrs, logging.WARNING if failed else logging.DEBUG, metrics)


# --------------------------------------------------------------------------- providers


class _Instruments:
    def __init__(self, meter: Any) -> None:
        self.requests = meter.create_counter("gateway.requests", unit="{request}", description="Gateway requests completed")
        self.request_failures = meter.create_counter(
            "gateway.request.failures", unit="{request}", description="Gateway requests that ended with status >= 400"
        )
        self.attempt_failures = meter.create_counter(
            "gateway.attempt.failures", unit="{attempt}", description="Failed provider attempts"
        )
        self.failovers = meter.create_counter("gateway.failovers", unit="{failover}", description="Failovers between providers")
        self.breaker_transitions = meter.create_counter(
            "gateway.breaker.transitions", unit="{transition}", description="Circuit breaker state changes"
        )
        self.route_decisions = meter.create_counter(
            "gateway.route.decisions", unit="{decision}", description="Routing decisions"
        )
        self.duration = meter.create_histogram("gateway.request.duration", unit="s", description="Request latency")
        self.ttft = meter.create_histogram("gateway.request.ttft", unit="s", description="Time to first token")
        self.tokens_in = meter.create_counter("gateway.tokens.input", unit="{token}", description="Prompt tokens")
        self.tokens_out = meter.create_counter("gateway.tokens.output", unit="{token}", description="Completion tokens")
        self.cost = meter.create_counter("gateway.cost", unit="USD", description="Estimated cost in US dollars")


class _State:
    def __init__(self, trace_api: Any, tracer: Any, instruments: _Instruments, active: bool = True) -> None:
        self.trace_api = trace_api
        self.tracer = tracer
        self.instruments = instruments
        self.active = active
        """False when no OpenTelemetry SDK is installed as the global provider: spans and
        metrics would go nowhere, so events skip them (the log record still goes out)."""


_lock = threading.Lock()
_state: _State | None = None
_override: tuple[Any, Any] | None = None


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Send events to these OpenTelemetry providers instead of the global ones.

    For tests (in-memory exporters) and hosts that keep their own providers.
    Calling it with no arguments goes back to the global providers.
    """
    global _state, _override
    with _lock:
        _override = (tracer_provider, meter_provider) if (tracer_provider or meter_provider) else None
        _state = None


def _get_state() -> _State:
    global _state
    state = _state
    if state is not None:
        return state
    with _lock:
        if _state is None:
            from opentelemetry import metrics, trace  # deferred: first event only

            tp, mp = _override or (None, None)
            tracer_provider = tp or trace.get_tracer_provider()
            tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)
            meter = (mp or metrics.get_meter_provider()).get_meter(INSTRUMENTATION_NAME)
            noop = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
            active = _override is not None or not isinstance(tracer_provider, noop)
            _state = _State(trace, tracer, _Instruments(meter), active)
        return _state


def reset() -> None:
    """Forget the cached providers (after telemetry was configured)."""
    global _state
    with _lock:
        _state = None


# --------------------------------------------------------------------------- emit


def _silent(level: int) -> bool:
    """Nothing would record an event at `level`: no OpenTelemetry SDK and no log handler wants
    it. The per-request success events then cost one check, not a dict of attributes."""
    try:
        return not _get_state().active and not logger.isEnabledFor(level)
    except Exception:
        return False


class _Inactive(Exception):
    pass


def _emit(name: str, attrs: dict[str, Any], level: int, metrics: Callable[[_Instruments], None]) -> None:
    attrs = {"gateway.event": name, **attrs}
    try:
        state = _get_state()
        if not state.active:
            raise _Inactive
        span = state.trace_api.get_current_span()
        if span.is_recording():
            span.add_event(f"gateway.{name}", attrs)
        else:
            with state.tracer.start_as_current_span(f"gateway.{name}", attributes=attrs):
                pass
        metrics(state.instruments)
    except _Inactive:
        pass
    except Exception:  # telemetry must never break a request
        logger.debug("telemetry event %s could not be recorded", name, exc_info=True)
    try:
        if logger.isEnabledFor(level):
            text = " ".join(f"{k.removeprefix('gateway.')}={_fmt(v)}" for k, v in attrs.items() if k != "gateway.event")
            logger.log(level, "%s %s", name, text, extra=attrs)
    except Exception:
        pass


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _attrs(**values: Any) -> dict[str, Any]:
    """`gateway.`-prefixed attributes, leaving out values that are None."""
    return {f"gateway.{k}": v for k, v in values.items() if v is not None}


def _pick(attrs: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {f"gateway.{k}": attrs[f"gateway.{k}"] for k in keys if f"gateway.{k}" in attrs}


def _ident(value: Any) -> str:
    """An identifier-like string, or `redacted`. None becomes `none`."""
    if value is None:
        return "none"
    if isinstance(value, Enum):
        value = value.value if isinstance(value.value, str) else value.name
    if not isinstance(value, str):
        return REDACTED
    return value if _IDENT.fullmatch(value) else REDACTED


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return max(f, 0.0)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return max(int(f), 0)
