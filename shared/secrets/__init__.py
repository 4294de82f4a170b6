"""Provider keys and tokens: app settings in development, Azure Key Vault (managed identity)
in staging/production, Entra ID tokens for keyless Azure OpenAI.

    SecretProvider (protocol)    get / refresh / status / close
    ├── EnvSecretProvider        app settings, fail-closed checks
    └── KeyVaultSecretProvider   cached, single-flight, stale-on-failure, backoff
    EntraTokenProvider           bearer tokens, refreshed before expiry
    SecretUnavailable            names the secret and the reason, never the value
    └── TokenUnavailable

No Azure SDK is imported by importing this package.
"""

from shared.secrets.base import SecretProvider, SecretUnavailable, TokenUnavailable, check_value
from shared.secrets.credentials import build_credential
from shared.secrets.entra import COGNITIVE_SERVICES_SCOPE, EntraTokenProvider
from shared.secrets.env import EnvSecretProvider
from shared.secrets.keyvault import KeyVaultSecretProvider
from shared.secrets.redact import REGISTRY, RedactingFilter, SecretRegistry, install_redaction, redact
from shared.secrets.settings import (
    SecretsConfigError,
    SecretsSettings,
    build_entra_token_provider,
    build_secret_provider,
)

__all__ = [
    "COGNITIVE_SERVICES_SCOPE",
    "EntraTokenProvider",
    "EnvSecretProvider",
    "KeyVaultSecretProvider",
    "REGISTRY",
    "RedactingFilter",
    "SecretProvider",
    "SecretRegistry",
    "SecretUnavailable",
    "SecretsConfigError",
    "SecretsSettings",
    "TokenUnavailable",
    "build_credential",
    "build_entra_token_provider",
    "build_secret_provider",
    "check_value",
    "install_redaction",
    "redact",
]
