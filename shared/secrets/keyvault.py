"""Secrets from Azure Key Vault, read with the app's managed identity and cached in memory.

Semantics (all times from the injected monotonic `clock`; no timers, no background tasks):

* fresh (age < ttl): served from memory, no vault call;
* expired or missing: ONE vault read per name at a time (single-flight: concurrent callers
  share one task), the result is cached;
* the vault fails (unreachable, timeout, 429, 5xx, auth): the cached value keeps being served
  until its age passes `max_stale`; the vault is then left alone for an exponentially
  growing delay (`backoff_initial` doubling up to `backoff_max`; at least the 429's
  Retry-After, capped at `retry_after_max`) during which no call is made;
* 404 (deleted) or an empty/placeholder value: fail closed, cached value dropped;
  other 4xx (e.g. 403, RBAC missing): like a vault failure for that name only;
* `refresh(name)` (the upstream rejected the key: rotation) re-reads at most once per
  `refresh_min_interval` per name and joins a read already in flight.

The SDK's own retries are off (`retry_total=0`): it would sleep inside the request,
honouring Retry-After for minutes. Azure SDKs are imported when the client is first built.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.secrets.base import SecretUnavailable, check_value, error_info
from shared.secrets.redact import REGISTRY, SecretRegistry

__all__ = ["KeyVaultSecretProvider", "retry_after_seconds"]

log = logging.getLogger("shared.secrets")

_NEVER = -math.inf


@dataclass
class _Entry:
    value: str | None = field(default=None, repr=False)
    version: str | None = None
    fetched_at: float | None = None
    last_error: dict[str, str] | None = None
    retry_at: float = _NEVER
    task: asyncio.Task[str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"_Entry(cached={self.value is not None}, version={self.version!r})"


class KeyVaultSecretProvider:
    def __init__(
        self,
        vault_url: str,
        credential: Any,
        *,
        ttl: float = 300.0,
        max_stale: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
        refresh_min_interval: float = 5.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        retry_after_max: float = 600.0,
        call_timeout: float = 10.0,
        verify_challenge_resource: bool = True,
        client_kwargs: dict[str, Any] | None = None,
        owns_credential: bool = False,
        registry: SecretRegistry | None = None,
    ) -> None:
        """`credential`: an async azure-identity credential, or a zero-argument factory of one
        (built on first use, so start-up imports nothing). `owns_credential`: close() closes it."""
        if ttl <= 0 or max_stale < ttl:
            raise ValueError("need 0 < ttl <= max_stale")
        self.vault_url = vault_url.rstrip("/")
        self._credential = credential
        self._ttl = ttl
        self._max_stale = max_stale
        self._clock = clock
        self._refresh_min_interval = refresh_min_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max
        self._call_timeout = call_timeout
        self._verify = verify_challenge_resource
        self._client_kwargs = dict(client_kwargs or {})
        self._owns_credential = owns_credential
        self._registry = registry or REGISTRY
        self._client: Any = None
        self._entries: dict[str, _Entry] = {}
        self._failures = 0
        self._blocked_until = _NEVER
        self._blocked_reason = ""
        self._closed = False

    def __repr__(self) -> str:
        cached = sorted(n for n, e in self._entries.items() if e.value is not None)
        return f"KeyVaultSecretProvider(vault_url={self.vault_url!r}, cached={cached})"

    # -- the protocol -------------------------------------------------------------------

    async def get(self, name: str) -> str:
        entry = self._entries.setdefault(name, _Entry())
        if entry.value is not None and self._clock() - entry.fetched_at < self._ttl:
            return entry.value
        return await self._read(name, entry)

    async def refresh(self, name: str) -> str:
        entry = self._entries.setdefault(name, _Entry())
        if entry.task is None and entry.value is not None:
            if self._clock() - entry.fetched_at < self._refresh_min_interval:
                return entry.value  # read moments ago: a burst of 401s costs one vault read
        return await self._read(name, entry)

    def status(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        backoff = max(0.0, self._blocked_until - now)
        out: dict[str, dict[str, Any]] = {}
        for name, e in self._entries.items():
            age = None if e.fetched_at is None or e.value is None else round(now - e.fetched_at, 3)
            out[name] = {
                "source": "keyvault",
                "cached": e.value is not None,
                "age_seconds": age,
                "fresh": age is not None and age < self._ttl,
                "version": e.version,
                "last_error": dict(e.last_error) if e.last_error else None,
                "backoff_seconds": round(max(backoff, e.retry_at - now, 0.0), 3),
            }
        return out

    async def close(self) -> None:
        self._closed = True
        for entry in self._entries.values():
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        if self._owns_credential and hasattr(self._credential, "get_token"):
            await self._credential.close()

    # -- internals ----------------------------------------------------------------------

    async def _read(self, name: str, entry: _Entry) -> str:
        if self._closed:
            raise SecretUnavailable(name, "provider closed")
        if entry.task is None:
            now = self._clock()
            gate = max(self._blocked_until, entry.retry_at)
            if now < gate:
                why = self._blocked_reason if self._blocked_until >= entry.retry_at else _reason(entry)
                return self._stale_or_raise(name, entry, now, f"vault not retried for {gate - now:.1f}s after {why}")
            entry.task = asyncio.ensure_future(self._fetch(name, entry))
            entry.task.add_done_callback(_consume)
        return await asyncio.shield(entry.task)

    async def _fetch(self, name: str, entry: _Entry) -> str:
        try:
            return await self._fetch_once(name, entry)
        finally:
            entry.task = None

    async def _fetch_once(self, name: str, entry: _Entry) -> str:
        try:
            client = self._get_client()
        except Exception as exc:  # bad URL, credential factory failed, SDK missing
            entry.last_error = error_info(exc)
            raise SecretUnavailable(name, f"cannot build the Key Vault client: {_reason(entry)}") from None
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )

        try:
            secret = await asyncio.wait_for(client.get_secret(name), self._call_timeout)
        except ResourceNotFoundError as exc:
            return self._reject(name, entry, exc, "not found in the vault", drop=True)
        except ClientAuthenticationError as exc:
            return self._vault_failed(name, entry, exc, None)
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 429 or status == 408 or status >= 500:
                return self._vault_failed(name, entry, exc, retry_after_seconds(exc.response))
            return self._reject(name, entry, exc, f"vault answered {status}", drop=False)
        except Exception as exc:
            # Unreachable/timeouts (ServiceRequestError, ServiceResponseError, TimeoutError,
            # OSError) and anything unexpected (e.g. a challenge for another resource): the
            # vault is treated as failing, the caller gets the cached value or fails closed.
            return self._vault_failed(name, entry, exc, None)

        now = self._clock()
        value = secret.value
        problem = check_value(value)
        if problem is not None:
            entry.value = entry.fetched_at = None
            entry.retry_at = now + self._refresh_min_interval
            entry.last_error = {"type": "SecretUnavailable", "message": f"vault value rejected: {problem}"}
            log.warning("Key Vault secret %s rejected: %s", name, problem)
            raise SecretUnavailable(name, f"vault value rejected: {problem}")
        self._registry.add(value)
        rotated = entry.value is not None and entry.value != value
        entry.value, entry.fetched_at = value, now
        entry.version = secret.properties.version
        entry.last_error, entry.retry_at = None, _NEVER
        self._failures, self._blocked_until, self._blocked_reason = 0, _NEVER, ""
        log.info("Key Vault secret %s read (version %s%s)", name, entry.version, ", rotated" if rotated else "")
        return value

    def _vault_failed(self, name: str, entry: _Entry, exc: BaseException, retry_after: float | None) -> str:
        now = self._clock()
        self._failures += 1
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (self._failures - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._retry_after_max))
        self._blocked_until = now + delay
        entry.last_error = error_info(exc)
        self._blocked_reason = _reason(entry)
        log.warning(
            "Key Vault read of %s failed (%s); vault backing off %.1fs (failure %d)",
            name, self._blocked_reason, delay, self._failures,
        )
        return self._stale_or_raise(name, entry, now, f"vault read failed: {self._blocked_reason}")

    def _reject(self, name: str, entry: _Entry, exc: BaseException, what: str, *, drop: bool) -> str:
        now = self._clock()
        entry.last_error = error_info(exc)
        entry.retry_at = now + self._refresh_min_interval
        if drop:
            entry.value = entry.fetched_at = None
        log.warning("Key Vault read of %s failed: %s (%s)", name, what, entry.last_error["type"])
        return self._stale_or_raise(name, entry, now, f"{what} ({_reason(entry)})")

    def _stale_or_raise(self, name: str, entry: _Entry, now: float, reason: str) -> str:
        if entry.value is not None:
            age = now - entry.fetched_at
            if age <= self._max_stale:
                log.debug("serving cached secret %s aged %.0fs: %s", name, age, reason)
                return entry.value
            entry.value = entry.fetched_at = None
            reason += f"; cached value older than max_stale ({self._max_stale:.0f}s), dropped"
        raise SecretUnavailable(name, reason)

    def _get_client(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets.aio import SecretClient

            if not hasattr(self._credential, "get_token"):
                self._credential = self._credential()  # a factory: build on first use
            kwargs: dict[str, Any] = {"retry_total": 0, **self._client_kwargs}
            if not self._verify:
                kwargs["verify_challenge_resource"] = False
            self._client = SecretClient(self.vault_url, self._credential, **kwargs)
        return self._client


def _reason(entry: _Entry) -> str:
    err = entry.last_error or {}
    return f"{err.get('type', 'error')}: {err.get('message', '')}".rstrip(": ")


def _consume(task: asyncio.Task[Any]) -> None:
    """Mark a failed read's exception as retrieved even when every waiter was cancelled."""
    if not task.cancelled():
        task.exception()


def retry_after_seconds(response: Any, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a throttled vault asked us to wait (`retry-after-ms`, `x-ms-retry-after-ms`,
    `Retry-After`), or None. The header rules live in `shared.resilience.retry_after`."""
    from shared.resilience.retry_after import parse_retry_after

    headers = getattr(response, "headers", None) or {}
    return parse_retry_after(headers, now())
