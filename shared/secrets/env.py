"""Secrets from app settings / environment variables: local development.

`get("azure-openai-key")` looks up `azure-openai-key`, then `AZURE_OPENAI_KEY`. Fails
closed on a missing, empty or placeholder value, and on an App Service Key Vault reference
(`@Microsoft.KeyVault(...)`) the platform left unresolved.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from shared.secrets.base import SecretUnavailable, check_value
from shared.secrets.redact import REGISTRY, SecretRegistry

__all__ = ["EnvSecretProvider", "setting_names"]

log = logging.getLogger("shared.secrets")


def setting_names(name: str) -> list[str]:
    """The app-setting names tried for a secret name, in order."""
    upper = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    return [name] if upper == name or not upper else [name, upper]


class EnvSecretProvider:
    def __init__(self, env: Mapping[str, str], *, registry: SecretRegistry | None = None) -> None:
        self._env = env
        self._registry = registry or REGISTRY
        self._status: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, tuple[str, str]] = {}  # name -> (setting, value) last accepted

    def __repr__(self) -> str:
        return f"EnvSecretProvider(resolved={sorted(n for n, s in self._status.items() if s['cached'])})"

    async def get(self, name: str) -> str:
        last = self._resolved.get(name)
        if last is not None and self._env.get(last[0]) == last[1]:
            return last[1]  # unchanged since it was checked: the request path skips the checks
        tried = setting_names(name)
        for key in tried:
            if key in self._env:
                value = self._env[key]
                problem = check_value(value)
                if problem is not None:
                    return self._fail(name, f"app setting {key}: {problem}")
                self._registry.add(value)
                self._status[name] = {"source": "env", "setting": key, "cached": True, "age_seconds": 0.0,
                                      "last_error": None}
                self._resolved[name] = (key, value)
                return value
        return self._fail(name, f"no app setting {' or '.join(tried)}")

    async def refresh(self, name: str) -> str:
        return await self.get(name)

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entry) for name, entry in self._status.items()}

    async def close(self) -> None:
        return None

    def _fail(self, name: str, reason: str) -> str:
        self._resolved.pop(name, None)
        err = SecretUnavailable(name, reason)
        self._status[name] = {"source": "env", "setting": None, "cached": False, "age_seconds": None,
                              "last_error": {"type": "SecretUnavailable", "message": str(err)}}
        log.warning("secret %s unavailable: %s", name, reason)
        raise err
