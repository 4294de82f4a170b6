"""The task types a request can be routed by.

The names are part of the public API (headers, body hints, config keys), so they
never change spelling.
"""

from __future__ import annotations

TASK_TYPES: tuple[str, ...] = (
    "chat",
    "code",
    "reasoning",
    "summarization",
    "translation",
    "creative",
    "extraction",
    "classification",
    "qa",
)

_TASK_SET = frozenset(TASK_TYPES)


def is_task_type(value: object) -> bool:
    return isinstance(value, str) and value in _TASK_SET
