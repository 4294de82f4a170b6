"""The usage and cost ledger: one record per gateway request.

    UsageLedger (protocol)
    ├── MemoryLedger   in-process; tests and local development
    └── TableLedger    Azure Table Storage, written in the background in batches

`record()` is on the request path: it only appends to a bounded in-memory queue and
never raises or awaits. A background task writes the queue every `flush_interval`
seconds (sooner once `max_batch` records wait) as entity-group transactions of up to
100 entities of one partition. Table layout:

    PartitionKey  UTC day of the request, `YYYYMMDD` (a date range reads few partitions)
    RowKey        `YYYYMMDDHHMMSS<microseconds>-<request id>-<8 random hex>`: sortable by
                  time, unique across instances; written with upsert, so a retried
                  batch cannot duplicate or conflict
    Time, RequestId, Provider, Model, TaskType, Strategy, PromptTokens,
    CompletionTokens, CostUsd, Estimated, LatencyMs, TtftMs, Status, Stream

Loss is bounded: a store outage keeps records queued and retried with backoff; past
`max_queue` the OLDEST are dropped and counted (logged on the next flush). An instance
that dies loses at most what it had queued: about `flush_interval` seconds of records,
never more than `max_queue`. `close()` makes a final flush.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import os
import time as _time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

from shared.errors import GatewayError

__all__ = ["LedgerUnavailable", "MemoryLedger", "TableLedger", "UsageLedger", "UsageRecord"]

log = logging.getLogger("gateway.usage")

MAX_TRANSACTION = 100  # Azure Table entity-group transaction limit


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    time: datetime  # UTC
    provider: str
    model: str
    task_type: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    estimated: bool
    latency_ms: int
    ttft_ms: int | None
    status: int
    stream: bool
    strategy: str


@runtime_checkable
class UsageLedger(Protocol):
    def record(self, rec: UsageRecord) -> None:
        """Enqueue `rec`. Non-blocking; never raises."""

    async def flush(self) -> int:
        """Write what is queued; the number of records written."""

    async def query(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Records with `start <= time < end`, oldest first."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Final flush, then release resources."""


class LedgerUnavailable(GatewayError):
    """The usage store could not be read."""

    status = 503
    type = "service_unavailable"
    code = "usage_store_unavailable"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# --------------------------------------------------------------------------- memory


class MemoryLedger:
    """Keeps records in memory (bounded: the oldest go first past `max_records`)."""

    def __init__(self, max_records: int = 100_000) -> None:
        self._records: deque[UsageRecord] = deque(maxlen=max_records)

    def record(self, rec: UsageRecord) -> None:
        self._records.append(rec)

    async def flush(self) -> int:
        return 0

    async def query(self, start: datetime, end: datetime) -> list[UsageRecord]:
        lo, hi = _utc(start), _utc(end)
        return sorted((r for r in self._records if lo <= _utc(r.time) < hi), key=lambda r: _utc(r.time))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------- table


_ROWKEY_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")


def partition_key(t: datetime) -> str:
    return _utc(t).strftime("%Y%m%d")


def row_key(rec: UsageRecord) -> str:
    rid = _ROWKEY_UNSAFE.sub("_", rec.request_id)[:64] or "none"
    return f"{_utc(rec.time):%Y%m%d%H%M%S%f}-{rid}-{os.urandom(4).hex()}"


def to_entity(rec: UsageRecord, pk: str, rk: str) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": rk,
        "Time": _utc(rec.time),
        "RequestId": rec.request_id,
        "Provider": rec.provider,
        "Model": rec.model,
        "TaskType": rec.task_type,
        "Strategy": rec.strategy,
        "PromptTokens": int(rec.prompt_tokens),
        "CompletionTokens": int(rec.completion_tokens),
        "CostUsd": float(rec.cost_usd),
        "Estimated": bool(rec.estimated),
        "LatencyMs": int(rec.latency_ms),
        "Status": int(rec.status),
        "Stream": bool(rec.stream),
    }
    if rec.ttft_ms is not None:
        entity["TtftMs"] = int(rec.ttft_ms)
    return entity


def from_entity(e: Any) -> UsageRecord:
    t = e["Time"]
    t = datetime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, tzinfo=UTC)
    ttft = e.get("TtftMs")
    return UsageRecord(
        request_id=str(e.get("RequestId", "")),
        time=t,
        provider=str(e.get("Provider", "")),
        model=str(e.get("Model", "")),
        task_type=str(e.get("TaskType", "")),
        prompt_tokens=int(e.get("PromptTokens", 0)),
        completion_tokens=int(e.get("CompletionTokens", 0)),
        cost_usd=float(e.get("CostUsd", 0.0)),
        estimated=bool(e.get("Estimated", False)),
        latency_ms=int(e.get("LatencyMs", 0)),
        ttft_ms=None if ttft is None else int(ttft),
        status=int(e.get("Status", 0)),
        stream=bool(e.get("Stream", False)),
        strategy=str(e.get("Strategy", "")),
    )


@dataclass(frozen=True)
class _Pending:
    pk: str
    rk: str
    rec: UsageRecord


class TableLedger:
    """Usage records in Azure Table Storage, written in batches by a background task.

    `clock` (monotonic seconds) times the retry backoff; `sleep` waits between the
    final flush attempts in `close()`. Both are injectable for tests.
    """

    def __init__(
        self,
        conn: Any,
        table_name: str = "llmusage",
        flush_interval: float = 1.0,
        max_batch: int = 100,
        max_queue: int = 10_000,
        clock: Callable[[], float] = _time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_backoff: float = 30.0,
        close_attempts: int = 3,
        op_timeout: float = 10.0,
        client_factory: Callable[[Any, str], Any] | None = None,
        max_in_flight: int = 4,
    ) -> None:
        if flush_interval <= 0 or max_queue < 1 or max_batch < 1:
            raise ValueError("flush_interval must be > 0 and max_batch, max_queue >= 1")
        self._conn = conn
        self._table_name = table_name
        self._flush_interval = float(flush_interval)
        self._max_batch = min(int(max_batch), MAX_TRANSACTION)
        self._max_queue = int(max_queue)
        self._clock = clock
        self._sleep = sleep
        self._max_backoff = float(max_backoff)
        self._close_attempts = max(1, int(close_attempts))
        self._op_timeout = float(op_timeout)
        self._client_factory = client_factory
        self._max_in_flight = max(1, int(max_in_flight))
        self._in_flight = 0
        self._queue: deque[_Pending] = deque()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._client: Any = None
        self._table_ready = False
        self._closing = False
        self._failures = 0
        self._retry_at = 0.0
        self.dropped = 0  # total records dropped because the queue was full
        self.written = 0  # total records written
        self.lost_on_close = 0
        self._drops_unlogged = 0

    # -- the request path ---------------------------------------------------

    def record(self, rec: UsageRecord) -> None:
        """Enqueue `rec` (drops the oldest when full). Never raises, never awaits."""
        try:
            self._queue.append(_Pending(partition_key(rec.time), row_key(rec), rec))
            while len(self._queue) > self._max_queue:
                self._queue.popleft()
                self.dropped += 1
                self._drops_unlogged += 1
            if len(self._queue) >= self._max_batch and self._clock() >= self._retry_at:
                self._wake.set()
        except Exception:  # a malformed record must not fail the request
            self.dropped += 1
            self._drops_unlogged += 1

    @property
    def pending(self) -> int:
        """Records not yet written: queued, plus those in a write under way."""
        return len(self._queue) + self._in_flight

    # -- background ---------------------------------------------------------

    async def start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(), name=f"usage-ledger-{self._table_name}")

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                break
            if self._queue and self._clock() >= self._retry_at:
                try:
                    await self.flush()
                except Exception:  # keep the flusher alive whatever happens
                    log.exception("usage ledger: unexpected flush error")

    async def flush(self) -> int:
        """Write everything queued now. Never raises for store errors: records that
        could not be written stay queued (oldest first) and are retried later."""
        async with self._lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> int:
        self._log_drops()
        if not self._queue:
            return 0
        items = list(self._queue)
        self._queue.clear()
        chunks = _chunks(items, self._max_batch)
        # Several transactions in flight: one at a time cannot keep up with a busy instance
        # (a batch takes ~100 ms on a quiet emulator). At most `max_in_flight` writer tasks,
        # each write bounded by op_timeout.
        # After the first failure no new write starts (the store is likely down): the rest
        # stay queued for the next attempt, so an outage costs one timeout, not one per batch.
        results: list[BaseException | None] = [None] * len(chunks)
        attempted = [False] * len(chunks)
        todo = iter(range(len(chunks)))

        async def writer() -> None:
            for i in todo:
                if any(r is not None for r in results):
                    return
                attempted[i] = True
                try:
                    async with asyncio.timeout(self._op_timeout):
                        await self._submit(chunks[i])
                except Exception as exc:
                    results[i] = exc

        self._in_flight = len(items)
        try:
            workers = min(self._max_in_flight, len(chunks))
            await asyncio.gather(*(asyncio.create_task(writer(), name="usage-ledger-write") for _ in range(workers)))
        finally:
            self._in_flight = 0
        written = 0
        error: BaseException | None = None
        failed: list[_Pending] = []
        for chunk, exc, tried in zip(chunks, results, attempted):
            if tried and exc is None:
                written += len(chunk)
            else:
                error = error or exc
                failed.extend(chunk)
        if failed:
            self._requeue(failed)
        self.written += written
        if error is None:
            self._failures = 0
            self._retry_at = 0.0
        else:
            self._failures += 1
            backoff = min(self._max_backoff, self._flush_interval * 2 ** min(self._failures, 16))
            self._retry_at = self._clock() + backoff * random.uniform(0.5, 1.0)
            log.warning(
                "usage ledger: could not write %d records to table %s (%s); %d queued, retrying",
                sum(len(c) for c in chunks) - written, self._table_name, type(error).__name__, len(self._queue),
            )
        self._log_drops()
        return written

    def _requeue(self, failed: list[_Pending]) -> None:
        self._queue.extendleft(reversed(failed))
        while len(self._queue) > self._max_queue:
            self._queue.popleft()
            self.dropped += 1
            self._drops_unlogged += 1

    def _log_drops(self) -> None:
        if self._drops_unlogged:
            log.warning(
                "usage ledger: queue full (max_queue=%d): dropped the %d oldest records (%d in total)",
                self._max_queue, self._drops_unlogged, self.dropped,
            )
            self._drops_unlogged = 0

    async def _submit(self, chunk: list[_Pending]) -> None:
        client = await self._ensure_table()
        ops = [("upsert", to_entity(p.rec, p.pk, p.rk), {"mode": "replace"}) for p in chunk]
        try:
            await client.submit_transaction(ops, **self._call_options())
        except Exception as exc:
            if not _table_missing(exc):
                raise
            self._table_ready = False  # the table went away (e.g. a fresh emulator): create it again
            client = await self._ensure_table()
            await client.submit_transaction(ops, **self._call_options())

    def _call_options(self) -> dict[str, Any]:
        # One quick SDK retry for blips; our own backoff handles outages.
        return {
            "retry_total": 1,
            "retry_backoff_factor": 0.2,
            "retry_backoff_max": 1.0,
            "connection_timeout": min(5.0, self._op_timeout),
            "read_timeout": self._op_timeout,
        }

    async def _ensure_table(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory(self._conn, self._table_name)
            else:
                from shared.storage import table_client

                self._client = table_client(self._conn, self._table_name)
        if not self._table_ready:
            from azure.core.exceptions import ResourceExistsError

            try:
                await self._client.create_table(**self._call_options())
            except ResourceExistsError:
                pass
            self._table_ready = True
        return self._client

    # -- reading ------------------------------------------------------------

    async def query(self, start: datetime, end: datetime) -> list[UsageRecord]:
        """Records with `start <= time < end` (this instance's queue is flushed first)."""
        lo, hi = _utc(start), _utc(end)
        if hi <= lo:
            return []
        await self.flush()
        try:
            client = await self._ensure_table()
            pages = client.query_entities(
                "PartitionKey ge @pk_lo and PartitionKey le @pk_hi and Time ge @t_lo and Time lt @t_hi",
                parameters={"pk_lo": partition_key(lo), "pk_hi": partition_key(hi), "t_lo": lo, "t_hi": hi},
                results_per_page=1000,
                **self._call_options(),
            )
            out = [from_entity(e) async for e in pages]
        except Exception as exc:
            if _table_missing(exc):
                self._table_ready = False
                return []
            raise LedgerUnavailable(f"the usage store could not be read ({type(exc).__name__})") from exc
        out.sort(key=lambda r: r.time)
        return out

    # -- shutdown -----------------------------------------------------------

    async def close(self) -> None:
        """Stop the background task and flush; records still unwritten are counted and logged."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                pass
            self._task = None
        for attempt in range(self._close_attempts):
            await self.flush()
            if not self._queue:
                break
            if attempt + 1 < self._close_attempts:
                await self._sleep(min(self._max_backoff, 0.2 * 2**attempt))
        if self._queue:
            self.lost_on_close += len(self._queue)
            log.error("usage ledger: %d records could not be written before close and are lost", len(self._queue))
            self._queue.clear()
        if self._client is not None:
            try:
                await self._client.close()
            except Exception:
                pass
            self._client = None
            self._table_ready = False


def _table_missing(exc: BaseException) -> bool:
    code = str(getattr(exc, "error_code", "") or "")
    return code == "TableNotFound" or (getattr(exc, "status_code", None) == 404 and code in ("", "ResourceNotFound"))


def _chunks(items: list[_Pending], size: int) -> list[list[_Pending]]:
    """Group by partition (first-seen order), then split into transactions of `size`."""
    by_pk: dict[str, list[_Pending]] = {}
    for p in items:
        by_pk.setdefault(p.pk, []).append(p)
    return [group[i : i + size] for group in by_pk.values() for i in range(0, len(group), size)]
