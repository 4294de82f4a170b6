"""The Azure credential the gateway authenticates with (Key Vault, keyless Azure OpenAI).

* a user-assigned managed identity when its client id is configured
  (`managed_identity_client_id` in the secrets config, or the `AZURE_CLIENT_ID` app setting);
* otherwise `DefaultAzureCredential`: the system-assigned managed identity in Azure, the
  developer's own login locally (`az login`, azd, VS Code, environment variables).

Both are the async variants (`azure.identity.aio`), imported here on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_credential"]


def build_credential(client_id: str | None = None) -> Any:
    """An async azure-identity credential; the caller closes it (`await cred.close()`)."""
    if client_id:
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
