"""Defence in depth: scrub resolved secret values out of log records.

Providers register every value they resolve (and every access token they obtain) in an
in-memory `SecretRegistry`; `RedactingFilter` replaces any registered value in a log
record's message, arguments, exception and stack text with `***`. The registry holds
values in process memory only, never persists or logs them, and its repr shows a count.

Nothing in this package logs values in the first place: the filter catches accidents
elsewhere (a provider logging a request header, a library logging a URL with a key).
Install it on handlers (filters on a logger do not see records propagated from children):

    install_redaction()                 # every handler on the root logger
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

__all__ = ["MASK", "SecretRegistry", "REGISTRY", "RedactingFilter", "redact", "install_redaction"]

MASK = "***"
MIN_LENGTH = 6
"""Shorter values are not registered: masking them would mangle ordinary text."""


class SecretRegistry:
    def __init__(self, max_values: int = 512) -> None:
        self._values: dict[str, None] = {}
        self._max = max_values
        self._lock = threading.Lock()
        self._ordered: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"SecretRegistry(values={len(self._values)})"

    def __len__(self) -> int:
        return len(self._values)

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_LENGTH:
            return
        with self._lock:
            if value in self._values:
                return
            self._values[value] = None
            while len(self._values) > self._max:
                self._values.pop(next(iter(self._values)))
            # Longest first, so a value containing another is masked whole.
            self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._ordered = ()

    def redact(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text


REGISTRY = SecretRegistry()


def redact(text: str, registry: SecretRegistry | None = None) -> str:
    """`text` with every registered secret value replaced by `***`."""
    return (registry or REGISTRY).redact(text)


class RedactingFilter(logging.Filter):
    """Rewrites records in place; never drops one."""

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self._registry = registry or REGISTRY

    def filter(self, record: logging.LogRecord) -> bool:
        reg = self._registry
        if not len(reg):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        clean = reg.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = reg.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = reg.redact(record.stack_info)
        return True


def install_redaction(
    handlers: Iterable[logging.Handler] | None = None, registry: SecretRegistry | None = None
) -> RedactingFilter:
    """Add one `RedactingFilter` to `handlers` (default: the root logger's). Idempotent."""
    targets = list(handlers) if handlers is not None else list(logging.getLogger().handlers)
    filt = RedactingFilter(registry)
    for handler in targets:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt
