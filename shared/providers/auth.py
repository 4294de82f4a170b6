"""How a provider call authenticates: a key from the secret store, an Entra ID token, or nothing.

Values are fetched per call from caches (the secret provider and token provider
cache them), so a rotated key is picked up without a restart.
"""

from __future__ import annotations

from typing import Any, Protocol

from .base import UNAVAILABLE, ProviderError


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...

    async def rotate(self) -> bool:
        """Re-read the credential after the provider rejected it; True if it changed."""
        ...


class NoAuth:
    async def headers(self) -> dict[str, str]:
        return {}

    async def rotate(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NoAuth()"


class ApiKeyAuth:
    """A key named `secret_name` in the secret store, sent as `header: prefix + key`."""

    def __init__(self, provider: str, secrets: Any, secret_name: str, header: str, prefix: str = "") -> None:
        self.provider = provider
        self.secrets = secrets
        self.secret_name = secret_name
        self.header = header
        self.prefix = prefix
        self._last: str | None = None

    async def headers(self) -> dict[str, str]:
        try:
            value = await self.secrets.get(self.secret_name)
        except Exception as exc:  # SecretUnavailable or anything the store raises
            raise ProviderError(
                self.provider, UNAVAILABLE,
                f"secret {self.secret_name!r} is unavailable ({_reason(exc)})",
            ) from None
        self._last = value
        return {self.header: self.prefix + value}

    async def rotate(self) -> bool:
        before = self._last
        try:
            value = await self.secrets.refresh(self.secret_name)
        except Exception:
            return False
        return value != before

    def __repr__(self) -> str:
        return f"ApiKeyAuth(secret={self.secret_name!r}, header={self.header!r})"


class EntraAuth:
    """A Microsoft Entra ID bearer token for Azure OpenAI from the managed identity."""

    def __init__(self, provider: str, tokens: Any) -> None:
        self.provider = provider
        self.tokens = tokens

    async def headers(self) -> dict[str, str]:
        try:
            token = await self.tokens.token()
        except Exception as exc:
            raise ProviderError(
                self.provider, UNAVAILABLE, f"no Entra ID token for Azure OpenAI ({_reason(exc)})"
            ) from None
        return {"Authorization": "Bearer " + token}

    async def rotate(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "EntraAuth()"


def _reason(exc: BaseException) -> str:
    """The class and message of an error from a secret store; those never carry values."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else type(exc).__name__
