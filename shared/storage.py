"""Azure Table Storage connection, shared by the breaker store and the usage ledger.

Settings (app settings / environment), first match wins:
  LLM_TABLE_CONNECTION              a connection string (local: Azurite)
  LLM_TABLE_ENDPOINT                https://<account>.table.core.windows.net (managed identity)
  AzureWebJobsStorage__tableServiceUri   identity-based Functions storage (managed identity)
  AzureWebJobsStorage               a connection string, or `UseDevelopmentStorage=true`
With an endpoint, the credential is the managed identity (`AZURE_CLIENT_ID` selects a
user-assigned one) or, locally, the developer's own Azure login.

The SDK is imported here, on first use, not at module import (cold start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

DEV_STORAGE = "UseDevelopmentStorage=true"
AZURITE_DEV_CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


@dataclass(frozen=True)
class TableConnection:
    """Where the tables are. `source` names the setting it came from (for errors and health)."""

    source: str
    connection_string: str | None = None
    endpoint: str | None = None
    client_id: str | None = None

    def describe(self) -> str:
        """A description safe to show: never the account key."""
        if self.endpoint:
            return f"{self.endpoint} (managed identity, from {self.source})"
        return f"connection string from {self.source}"


def table_connection(env: Mapping[str, str]) -> TableConnection | None:
    """Resolve the table connection from settings, or None when nothing is configured."""
    client_id = env.get("AZURE_CLIENT_ID") or None
    if env.get("LLM_TABLE_CONNECTION"):
        return TableConnection("LLM_TABLE_CONNECTION", connection_string=_expand(env["LLM_TABLE_CONNECTION"]))
    if env.get("LLM_TABLE_ENDPOINT"):
        return TableConnection("LLM_TABLE_ENDPOINT", endpoint=env["LLM_TABLE_ENDPOINT"], client_id=client_id)
    uri = env.get("AzureWebJobsStorage__tableServiceUri")
    if uri:
        return TableConnection(
            "AzureWebJobsStorage__tableServiceUri",
            endpoint=uri,
            client_id=env.get("AzureWebJobsStorage__clientId") or client_id,
        )
    if env.get("AzureWebJobsStorage"):
        return TableConnection("AzureWebJobsStorage", connection_string=_expand(env["AzureWebJobsStorage"]))
    return None


def _expand(conn: str) -> str:
    return AZURITE_DEV_CONNECTION if conn.strip().rstrip(";") == DEV_STORAGE else conn


def table_client(conn: TableConnection, table_name: str) -> Any:
    """An async `azure.data.tables.aio.TableClient` for one table (lazy SDK import)."""
    from azure.data.tables.aio import TableClient

    if conn.connection_string:
        return TableClient.from_connection_string(conn.connection_string, table_name=table_name)
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    credential = (
        ManagedIdentityCredential(client_id=conn.client_id)
        if conn.client_id
        else DefaultAzureCredential()
    )
    return TableClient(endpoint=conn.endpoint, table_name=table_name, credential=credential)
