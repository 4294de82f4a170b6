"""JSON on the request path, through orjson (compiled; several times faster than `json`).

Provider bodies and stream events are parsed with `loads`; everything the gateway sends
(provider requests, responses, stream events) is encoded with `dumps`. A caller's own body
is still parsed by the standard library (`shared.api.request`), which keeps every value
exactly as sent. Both functions fall back to the standard library for the valid JSON that
orjson refuses (strings with lone surrogates, integers beyond 64 bits when encoding, NaN
and Infinity when decoding), so switching parsers changed nothing a caller or provider sees.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_decode_error = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (json.JSONDecodeError) when it is not JSON."""
    try:
        return orjson.loads(data)
    except _decode_error:
        return json.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(obj, separators=(",", ":")).encode()
