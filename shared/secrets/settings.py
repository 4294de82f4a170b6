"""Where provider keys come from: the `secrets` config section plus app settings.

Config section (all keys optional):

    {"source": "keyvault" | "env",
     "vault_url": "https://<vault>.vault.azure.net",     # else app setting LLM_KEYVAULT_URL
     "managed_identity_client_id": "<guid>",              # else app setting AZURE_CLIENT_ID
     "cache_ttl_seconds": 300, "max_stale_seconds": 86400, "refresh_min_interval_seconds": 5}

Without a section, the source is "keyvault" when LLM_KEYVAULT_URL is set, else "env".

LLM_KEYVAULT_INSECURE_DEV_MODE=1 is for tests and local development against a fake vault on
127.0.0.1 ONLY: it turns off the SDK's check that the vault host belongs to the challenge's
resource (vault.azure.net) and lets LLM_KEYVAULT_CA_BUNDLE name a CA file to trust. It is
refused unless the vault URL is a loopback address, and refused on Azure (WEBSITE_INSTANCE_ID).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping
from urllib.parse import urlsplit

from shared.errors import ConfigError
from shared.secrets.base import SecretProvider

__all__ = [
    "SecretsSettings",
    "SecretsConfigError",
    "build_secret_provider",
    "build_entra_token_provider",
    "VAULT_URL_SETTING",
    "CLIENT_ID_SETTING",
    "INSECURE_DEV_MODE_SETTING",
    "CA_BUNDLE_SETTING",
]

VAULT_URL_SETTING = "LLM_KEYVAULT_URL"
CLIENT_ID_SETTING = "AZURE_CLIENT_ID"
INSECURE_DEV_MODE_SETTING = "LLM_KEYVAULT_INSECURE_DEV_MODE"
CA_BUNDLE_SETTING = "LLM_KEYVAULT_CA_BUNDLE"
_AZURE_MARKER = "WEBSITE_INSTANCE_ID"  # set by App Service / Functions on every instance
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_KEYS = frozenset(
    {"source", "vault_url", "managed_identity_client_id", "cache_ttl_seconds", "max_stale_seconds",
     "refresh_min_interval_seconds", "call_timeout_seconds"}
)
_TRUE = frozenset({"1", "true", "yes", "on"})


class SecretsConfigError(ConfigError):
    """The secrets settings are invalid; names each setting and where it came from."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("secrets", problems)


@dataclass(frozen=True)
class SecretsSettings:
    source: Literal["env", "keyvault"]
    vault_url: str | None = None
    client_id: str | None = None
    cache_ttl_seconds: float = 300.0
    max_stale_seconds: float = 86400.0
    refresh_min_interval_seconds: float = 5.0
    call_timeout_seconds: float = 3.0
    insecure_dev_mode: bool = False
    """From LLM_KEYVAULT_INSECURE_DEV_MODE; tests and local fakes only, never Azure."""

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, env: Mapping[str, str]) -> "SecretsSettings":
        section = dict(section or {})
        problems: list[str] = []
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            problems.append(f"secrets: unknown key(s) {unknown}; expected some of {sorted(_KEYS)}")

        vault_url = section.get("vault_url") or env.get(VAULT_URL_SETTING) or None
        url_from = "secrets.vault_url" if section.get("vault_url") else VAULT_URL_SETTING
        source = section.get("source") or ("keyvault" if vault_url else "env")
        if source not in ("env", "keyvault"):
            problems.append(f"secrets.source: {source!r} is not one of 'env', 'keyvault'")
        client_id = section.get("managed_identity_client_id") or env.get(CLIENT_ID_SETTING) or None

        numbers: dict[str, float] = {}
        for key, default in (("cache_ttl_seconds", 300.0), ("max_stale_seconds", 86400.0),
                             ("refresh_min_interval_seconds", 5.0), ("call_timeout_seconds", 3.0)):
            raw = section.get(key, default)
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < 0:
                problems.append(f"secrets.{key}: {raw!r} is not a non-negative number")
                raw = default
            numbers[key] = float(raw)
        if numbers["call_timeout_seconds"] <= 0:
            problems.append("secrets.call_timeout_seconds: must be > 0")
        if numbers["cache_ttl_seconds"] <= 0:
            problems.append("secrets.cache_ttl_seconds: must be > 0")
        if numbers["max_stale_seconds"] < numbers["cache_ttl_seconds"]:
            problems.append(
                f"secrets.max_stale_seconds: {numbers['max_stale_seconds']!r} is below "
                f"cache_ttl_seconds {numbers['cache_ttl_seconds']!r}"
            )

        dev = str(env.get(INSECURE_DEV_MODE_SETTING, "")).strip().lower() in _TRUE
        if source == "keyvault":
            if not vault_url:
                problems.append(f"secrets: source 'keyvault' needs secrets.vault_url or the {VAULT_URL_SETTING} app setting")
            else:
                parts = urlsplit(str(vault_url))
                if parts.scheme != "https" or not parts.hostname:
                    problems.append(f"{url_from}: {vault_url!r} is not an https:// vault URL")
                elif dev and parts.hostname not in _LOOPBACK:
                    problems.append(
                        f"{INSECURE_DEV_MODE_SETTING}: only allowed with a loopback vault URL, not {parts.hostname!r}"
                    )
            if dev and env.get(_AZURE_MARKER):
                problems.append(f"{INSECURE_DEV_MODE_SETTING}: refused on Azure ({_AZURE_MARKER} is set)")
        if problems:
            raise SecretsConfigError(problems)
        return cls(
            source=source,
            vault_url=str(vault_url) if vault_url else None,
            client_id=client_id,
            cache_ttl_seconds=numbers["cache_ttl_seconds"],
            max_stale_seconds=numbers["max_stale_seconds"],
            refresh_min_interval_seconds=numbers["refresh_min_interval_seconds"],
            call_timeout_seconds=numbers["call_timeout_seconds"],
            insecure_dev_mode=dev and source == "keyvault",
        )


def build_secret_provider(
    settings: SecretsSettings,
    env: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
) -> SecretProvider:
    """The provider for `settings`. Builds no SDK object: the vault client and credential
    are created on the first read."""
    if settings.source == "env":
        from shared.secrets.env import EnvSecretProvider

        return EnvSecretProvider(env)

    from shared.secrets.credentials import build_credential
    from shared.secrets.keyvault import KeyVaultSecretProvider

    client_kwargs: dict[str, Any] = {}
    if settings.insecure_dev_mode and env.get(CA_BUNDLE_SETTING):
        client_kwargs["connection_verify"] = env[CA_BUNDLE_SETTING]
    client_id = settings.client_id
    return KeyVaultSecretProvider(
        settings.vault_url or "",
        lambda: build_credential(client_id),
        ttl=settings.cache_ttl_seconds,
        max_stale=settings.max_stale_seconds,
        refresh_min_interval=settings.refresh_min_interval_seconds,
        clock=clock,
        # Key Vault answers in milliseconds; a slow vault must not hold a request whose key
        # is cached (stale) for long: after this the stale value is served.
        call_timeout=settings.call_timeout_seconds,
        verify_challenge_resource=not settings.insecure_dev_mode,
        client_kwargs=client_kwargs,
        owns_credential=True,
    )


def build_entra_token_provider(
    settings: SecretsSettings,
    scope: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Any:
    """An `EntraTokenProvider` for keyless Azure OpenAI with the same identity as the vault."""
    from shared.secrets.credentials import build_credential
    from shared.secrets.entra import COGNITIVE_SERVICES_SCOPE, EntraTokenProvider

    client_id = settings.client_id
    return EntraTokenProvider(
        lambda: build_credential(client_id),
        scope or COGNITIVE_SERVICES_SCOPE,
        clock=clock,
        owns_credential=True,
    )
