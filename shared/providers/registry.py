"""Provider kinds by name: the one place a config `kind` becomes a class."""

from __future__ import annotations

from typing import Any

from shared.config import ProviderConfig

from .auth import ApiKeyAuth, Auth, EntraAuth, NoAuth
from .http_provider import HttpChatProvider
from .ollama import OllamaProvider
from .openai_compat import AzureOpenAIProvider, OpenAICompatibleProvider
from .transport import HttpClient

PROVIDER_KINDS: dict[str, type[HttpChatProvider]] = {
    "openai": OpenAICompatibleProvider,
    "azure_openai": AzureOpenAIProvider,
    "ollama": OllamaProvider,
}


def ignored_params(config: ProviderConfig, params: dict[str, Any]) -> list[str]:
    """Request fields this provider kind cannot honour (OpenAI kinds take every field)."""
    if config.kind == "ollama":
        from .ollama import unsupported_params

        return unsupported_params(params)
    return []


def make_auth(config: ProviderConfig, secrets: Any, tokens: Any) -> Auth:
    if config.auth == "none":
        return NoAuth()
    if config.auth == "entra_id":
        return EntraAuth(config.name, tokens)
    if config.kind == "azure_openai":
        return ApiKeyAuth(config.name, secrets, config.api_key_secret or "", "api-key")
    return ApiKeyAuth(config.name, secrets, config.api_key_secret or "", "Authorization", "Bearer ")


def build_provider(config: ProviderConfig, http: HttpClient, secrets: Any, tokens: Any, *, max_response_bytes: int) -> HttpChatProvider:
    cls = PROVIDER_KINDS[config.kind]
    return cls(config, http, make_auth(config, secrets, tokens), max_response_bytes=max_response_bytes)
