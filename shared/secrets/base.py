"""The secret-provider protocol, its error, and the value checks every provider applies.

    SecretUnavailable           -> a secret could not be resolved (names the secret and why)
    └── TokenUnavailable        -> an Entra ID access token could not be obtained

Messages, `status()` and reprs are built from secret NAMES only, never values.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

__all__ = ["SecretProvider", "SecretUnavailable", "TokenUnavailable", "check_value", "error_info"]


class SecretUnavailable(Exception):
    """A secret could not be resolved. The caller must fail closed (not call the provider)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"secret {name!r} unavailable: {reason}")


class TokenUnavailable(SecretUnavailable):
    """An Entra ID access token could not be obtained (keyless Azure OpenAI)."""


@runtime_checkable
class SecretProvider(Protocol):
    async def get(self, name: str) -> str:
        """The secret's value, from cache when fresh. Raises SecretUnavailable."""
        ...

    async def refresh(self, name: str) -> str:
        """Re-read after the upstream rejected the key (rotation). Single-flight, rate-limited."""
        ...

    def status(self) -> dict[str, dict[str, Any]]:
        """Per secret name: cached, age, last error. Never values."""
        ...

    async def close(self) -> None: ...


_KV_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\s*\(", re.IGNORECASE)
_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me", "placeholder", "todo", "xxx"}
)


def check_value(value: str | None) -> str | None:
    """Why `value` must not be used as a secret, or None when it looks like a real one.

    Rejects: missing, empty or whitespace; an App Service Key Vault reference the platform
    did not resolve (`@Microsoft.KeyVault(...)`, left as-is when the identity lacks access);
    obvious placeholders (`<...>`, `${...}`, `changeme`, ...).
    """
    if value is None:
        return "not set"
    text = value.strip()
    if not text:
        return "empty value"
    if _KV_REFERENCE.match(text):
        return "unresolved Key Vault reference (grant the app's identity access to the vault)"
    if (text.startswith("<") and text.endswith(">")) or (text.startswith("${") and text.endswith("}")):
        return "placeholder value"
    if text.lower() in _PLACEHOLDERS:
        return "placeholder value"
    return None


def error_info(exc: BaseException, limit: int = 200) -> dict[str, str]:
    """`{"type", "message"}` for status pages: redacted and truncated."""
    from shared.secrets.redact import redact

    message = redact(str(exc).splitlines()[0] if str(exc) else "")
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return {"type": type(exc).__name__, "message": message}
