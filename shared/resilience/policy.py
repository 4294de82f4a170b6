"""Breaker settings: one frozen value per provider, JSON-friendly, with a JSON Schema.

`BreakerSettings.from_dict({...})` validates a plain dict (from the routing config):
unknown keys and bad values raise `ValueError` naming the key and the bad value.
`BreakerSettings.SCHEMA` is the same contract as a JSON-Schema object, for the config
schema to embed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

# name -> (json type, description, minimum, exclusive minimum?, maximum)
_SPEC: dict[str, tuple[str, str, float | None, bool, float | None]] = {
    "failure_ratio": ("number", "Trip when failures/calls in the window reach this ratio (and min_calls is met).", 0, True, 1),
    "window_seconds": ("number", "Length of the sliding window the failure ratio is measured over.", 0, True, None),
    "min_calls": ("integer", "Calls needed in the window before the failure ratio can trip the breaker.", 1, False, None),
    "consecutive_failures": ("integer", "Trip after this many failures in a row (0 disables this rule).", 0, False, None),
    "open_seconds": ("number", "How long the first open lasts before a half-open probe is allowed.", 0, True, None),
    "open_backoff_multiplier": ("number", "Each consecutive re-open lasts this many times longer than the previous one.", 1, False, None),
    "max_open_seconds": ("number", "Cap on the grown open duration.", 0, True, None),
    "max_retry_after_seconds": ("number", "Cap on a provider's Retry-After honoured as an open duration.", 0, False, None),
    "probe_lease_seconds": ("number", "How long one instance may hold the half-open probe before another may take it.", 0, True, None),
    "cache_staleness_seconds": ("number", "How old an instance's cached breaker state may get before it re-reads the store.", 0, False, None),
    "flush_interval_seconds": ("number", "How often locally counted outcomes are written to the store (a trip flushes at once).", 0, True, None),
}


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Per-provider breaker settings. Defaults suit a chat-completion provider."""

    failure_ratio: float = 0.5
    window_seconds: float = 60.0
    min_calls: int = 10
    consecutive_failures: int = 5
    open_seconds: float = 30.0
    open_backoff_multiplier: float = 2.0
    max_open_seconds: float = 600.0
    max_retry_after_seconds: float = 3600.0
    probe_lease_seconds: float = 30.0
    cache_staleness_seconds: float = 1.0
    flush_interval_seconds: float = 1.0

    SCHEMA: ClassVar[dict[str, Any]]

    def __post_init__(self) -> None:
        for f in fields(self):
            _check(f.name, getattr(self, f.name), "BreakerSettings")
        if self.max_open_seconds < self.open_seconds:
            raise ValueError(
                f"breaker setting 'max_open_seconds' ({self.max_open_seconds!r}) must be >= "
                f"'open_seconds' ({self.open_seconds!r})"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "breaker") -> "BreakerSettings":
        """Validate a JSON object. `where` names its place in the config for error messages."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        known = set(_SPEC)
        for key in data:
            if key not in known:
                raise ValueError(f"{where}: unknown breaker setting {key!r} (known: {', '.join(sorted(known))})")
        for key, value in data.items():
            _check(key, value, where)
        kwargs = {k: (int(v) if _SPEC[k][0] == "integer" else float(v)) for k, v in data.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def open_duration(self, consecutive_opens: int) -> float:
        """Open duration for the n-th open in a row (1-based), grown and capped."""
        n = max(1, consecutive_opens)
        exponent = min(n - 1, 256)  # beyond that the cap applies anyway
        try:
            grown = self.open_seconds * (self.open_backoff_multiplier ** exponent)
        except OverflowError:
            grown = math.inf
        return min(grown, self.max_open_seconds)


def _check(key: str, value: Any, where: str) -> None:
    kind, _desc, minimum, exclusive, maximum = _SPEC[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: breaker setting {key!r} must be a {kind}, got {value!r}")
    if kind == "integer" and (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{where}: breaker setting {key!r} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: breaker setting {key!r} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        op = ">" if exclusive else ">="
        raise ValueError(f"{where}: breaker setting {key!r} must be {op} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}: breaker setting {key!r} must be <= {maximum}, got {value!r}")


def _schema() -> dict[str, Any]:
    defaults = BreakerSettings()
    props: dict[str, Any] = {}
    for name, (kind, desc, minimum, exclusive, maximum) in _SPEC.items():
        prop: dict[str, Any] = {"type": kind, "description": desc, "default": getattr(defaults, name)}
        if minimum is not None:
            prop["exclusiveMinimum" if exclusive else "minimum"] = minimum
        if maximum is not None:
            prop["maximum"] = maximum
        props[name] = prop
    return {
        "type": "object",
        "title": "Circuit breaker settings",
        "description": "Per-provider circuit breaker. Every key is optional; defaults shown.",
        "properties": props,
        "additionalProperties": False,
    }


BreakerSettings.SCHEMA = _schema()
