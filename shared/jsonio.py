"""JSON on the request path, through orjson (compiled; several times faster than `json`).

Provider bodies and stream events are parsed with `loads`; everything the gateway sends
(provider requests, responses, stream events) is encoded with `dumps`; a caller's own body
is parsed with `loads_exact`. All three fall back to the standard library for the valid
JSON that orjson refuses (strings with lone surrogates, integers beyond 64 bits when
encoding, NaN and Infinity when decoding). orjson reads integers beyond 64 bits as floats:
`loads_exact` leaves such bodies to the standard library, so a caller's values reach the
provider exactly as sent; `loads` accepts that for provider output, where no such number
is expected and a per-chunk scan would cost every stream.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_decode_error = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (json.JSONDecodeError) when it is not JSON."""
    try:
        return orjson.loads(data)
    except _decode_error:
        return json.loads(data)


_LONG_NUMBER = re.compile(rb"\d{19}")


def loads_exact(data: bytes) -> Any:
    """Parse JSON exactly as `json.loads` would (same values, same errors): orjson unless the
    text has a run of 19 or more digits (an integer orjson would turn into a float)."""
    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except _decode_error:
            pass
    return json.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(obj, separators=(",", ":")).encode()
