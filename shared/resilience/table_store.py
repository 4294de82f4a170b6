"""Breaker state in Azure Table Storage: one entity per provider.

    PartitionKey  "breaker"
    RowKey        the provider name, with characters Table keys forbid escaped as ~xxxx
    Provider      the provider name as given
    State         closed | open | half_open | isolated
    Epoch         int, bumped on every transition
    StateSince    double, epoch seconds
    Buckets       JSON [[bucket_start, calls, failures], ...] (the failure-ratio window)
    ConsecutiveFailures, ConsecutiveOpens   int
    OpenUntil     double, epoch seconds (OpenUntilUtc: the same as ISO text, for people)
    LastFailureClass, LastCause             string ("" = none)
    ProbeHolder   string, "<instance>#<n>" while a half-open probe lease is held
    ProbeExpires  double, epoch seconds
    V             schema version (1)

Writes are single-entity and ETag-conditional (`MatchConditions.IfNotModified`), never
batched: Azurite once ignored If-Match inside batches. The SDK is imported on first use,
and its own retries are off (`retry_total=0`): the facade retries on its next flush,
bounded by its own timeout, instead of holding a request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.storage import TableConnection, table_client

from .machine import BreakerState
from .store import StoreConflict

PARTITION = "breaker"
SCHEMA_VERSION = 1
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@+=")
_OPS = {"retry_total": 0}


def row_key(provider: str) -> str:
    return "".join(c if c in _SAFE else f"~{ord(c):04x}" for c in provider)


def to_entity(provider: str, s: BreakerState) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": row_key(provider),
        "V": SCHEMA_VERSION,
        "Provider": provider,
        "State": s.state,
        "Epoch": int(s.epoch),
        "StateSince": float(s.state_since),
        "Buckets": json.dumps([[b[0], b[1], b[2]] for b in s.buckets], separators=(",", ":")),
        "ConsecutiveFailures": int(s.consecutive_failures),
        "OpenUntil": float(s.open_until),
        "OpenUntilUtc": datetime.fromtimestamp(s.open_until, UTC).isoformat() if s.open_until else "",
        "ConsecutiveOpens": int(s.consecutive_opens),
        "LastFailureClass": s.last_failure_class or "",
        "ProbeHolder": s.probe_holder or "",
        "ProbeExpires": float(s.probe_expires),
        "LastCause": s.last_cause or "",
    }


def from_entity(e: Any) -> BreakerState:
    def num(key: str) -> float:
        v = e.get(key)
        return float(getattr(v, "value", v) or 0.0)

    def text(key: str) -> str | None:
        return e.get(key) or None

    buckets = tuple((float(a), int(b), int(c)) for a, b, c in json.loads(e.get("Buckets") or "[]"))
    return BreakerState(
        state=e.get("State") or "closed",
        epoch=int(num("Epoch")),
        state_since=num("StateSince"),
        buckets=buckets,
        consecutive_failures=int(num("ConsecutiveFailures")),
        open_until=num("OpenUntil"),
        consecutive_opens=int(num("ConsecutiveOpens")),
        last_failure_class=text("LastFailureClass"),
        probe_holder=text("ProbeHolder"),
        probe_expires=num("ProbeExpires"),
        last_cause=text("LastCause"),
    )


def _table_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", None) or ""
    return "TableNotFound" in str(code) or "TableNotFound" in str(exc)


class TableBreakerStore:
    kind = "table"

    def __init__(self, client: Any) -> None:
        """`client`: an `azure.data.tables.aio.TableClient` for the breaker table."""
        self._client = client
        self._table_ready = False
        self.calls = 0

    @classmethod
    def from_connection(cls, conn: TableConnection, table_name: str = "llmbreakers") -> "TableBreakerStore":
        """A store on `table_name` (created on first use when missing)."""
        return cls(table_client(conn, table_name))

    async def _ensure_table(self) -> None:
        if self._table_ready:
            return
        from azure.core.exceptions import ResourceExistsError

        self.calls += 1
        try:
            await self._client.create_table(**_OPS)
        except ResourceExistsError:
            pass
        self._table_ready = True

    async def get(self, provider: str) -> tuple[BreakerState, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        await self._ensure_table()
        self.calls += 1
        try:
            entity = await self._client.get_entity(PARTITION, row_key(provider), **_OPS)
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                self._table_ready = False  # e.g. an emulator restarted empty
            return None
        return from_entity(entity), entity.metadata["etag"]

    async def create(self, provider: str, state: BreakerState) -> str:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        await self._ensure_table()
        self.calls += 1
        try:
            meta = await self._client.create_entity(to_entity(provider, state), **_OPS)
        except ResourceExistsError as exc:
            raise StoreConflict(f"breaker {provider!r} already exists") from exc
        except ResourceNotFoundError:
            self._table_ready = False
            await self._ensure_table()
            self.calls += 1
            try:
                meta = await self._client.create_entity(to_entity(provider, state), **_OPS)
            except ResourceExistsError as exc:
                raise StoreConflict(f"breaker {provider!r} already exists") from exc
        return meta["etag"]

    async def replace(self, provider: str, state: BreakerState, etag: str) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        await self._ensure_table()
        self.calls += 1
        try:
            meta = await self._client.update_entity(
                to_entity(provider, state), mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified, **_OPS,
            )
        except ResourceModifiedError as exc:
            raise StoreConflict(f"breaker {provider!r} changed since read") from exc
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                self._table_ready = False
            raise StoreConflict(f"breaker {provider!r} vanished since read") from exc
        return meta["etag"]

    async def list(self) -> list[tuple[str, BreakerState, str]]:
        from azure.core.exceptions import ResourceNotFoundError

        await self._ensure_table()
        self.calls += 1
        out: list[tuple[str, BreakerState, str]] = []
        try:
            async for entity in self._client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": PARTITION}, **_OPS
            ):
                out.append((entity.get("Provider") or entity["RowKey"], from_entity(entity), entity.metadata["etag"]))
        except ResourceNotFoundError as exc:
            if _table_missing(exc):
                self._table_ready = False
            return []
        return out

    async def close(self) -> None:
        await self._client.close()
