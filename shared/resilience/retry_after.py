"""Read how long a provider asked us to wait, from its response headers.

Checked in this order (as azure-core does): `retry-after-ms`, `x-ms-retry-after-ms`
(milliseconds), then `Retry-After` (delay-seconds or an HTTP-date). Header names are
case-insensitive. Returns seconds from `now` (>= 0), or None when absent or unreadable.
"""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from typing import Mapping

_MS_HEADERS = ("retry-after-ms", "x-ms-retry-after-ms")


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    for name in _MS_HEADERS:
        value = _number(lowered.get(name))
        if value is not None:
            return value / 1000.0
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(str(raw).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value
