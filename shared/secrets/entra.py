"""Entra ID access tokens for keyless Azure OpenAI (`Authorization: Bearer <token>`).

`EntraTokenProvider.token()` returns a cached token and fetches a new one `refresh_margin`
seconds (default 300) before it expires; concurrent callers share one fetch. When a refresh
fails while the cached token is still valid, the cached token is served and the next attempt
waits `retry_interval` seconds. `expires_on` is epoch seconds, so `clock` is wall time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from shared.secrets.base import TokenUnavailable, error_info
from shared.secrets.redact import REGISTRY, SecretRegistry

__all__ = ["EntraTokenProvider", "COGNITIVE_SERVICES_SCOPE"]

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"

log = logging.getLogger("shared.secrets")


class EntraTokenProvider:
    def __init__(
        self,
        credential: Any,
        scope: str = COGNITIVE_SERVICES_SCOPE,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        retry_interval: float = 10.0,
        owns_credential: bool = False,
        registry: SecretRegistry | None = None,
    ) -> None:
        """`credential`: an async azure-identity credential or a zero-argument factory of one."""
        self._credential = credential
        self.scope = scope
        self._clock = clock
        self._margin = refresh_margin
        self._retry_interval = retry_interval
        self._owns_credential = owns_credential
        self._registry = registry or REGISTRY
        self._token: str | None = None
        self._expires_on = 0.0
        self._next_attempt = 0.0
        self._task: asyncio.Task[str] | None = None
        self._last_error: dict[str, str] | None = None
        self.fetches = 0

    def __repr__(self) -> str:
        return f"EntraTokenProvider(scope={self.scope!r}, cached={self._token is not None})"

    async def token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._expires_on - self._margin:
            return self._token
        if self._task is None:
            if self._token is not None and now < self._expires_on and now < self._next_attempt:
                return self._token  # a refresh failed moments ago; the token still works
            self._task = asyncio.ensure_future(self._fetch())
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._task)

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "scope": self.scope,
            "cached": self._token is not None,
            "expires_in_seconds": round(self._expires_on - now, 3) if self._token else None,
            "last_error": dict(self._last_error) if self._last_error else None,
        }

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._owns_credential and hasattr(self._credential, "get_token"):  # built, not a factory
            await self._credential.close()

    async def _fetch(self) -> str:
        try:
            if not hasattr(self._credential, "get_token"):
                self._credential = self._credential()
            self.fetches += 1
            access = await self._credential.get_token(self.scope)
        except Exception as exc:
            now = self._clock()
            self._last_error = error_info(exc)
            self._next_attempt = now + self._retry_interval
            log.warning("Entra token for %s failed (%s)", self.scope, self._last_error["type"])
            if self._token is not None and now < self._expires_on:
                return self._token
            self._token = None
            reason = f"{self._last_error['type']}: {self._last_error['message']}"
            raise TokenUnavailable(f"entra-token {self.scope}", reason) from None
        finally:
            self._task = None
        self._registry.add(access.token)
        self._token, self._expires_on = access.token, float(access.expires_on)
        self._last_error = None
        log.info("Entra token for %s obtained (expires in %.0fs)", self.scope, self._expires_on - self._clock())
        return access.token
