"""Resilience: circuit breakers whose state every instance shares.

    Breakers            the facade the router calls (admit / record / release / status)
    BreakerSettings     per-provider settings (+ SCHEMA for the config schema)
    Admission           admit's answer
    MemoryBreakerStore  in-process store (tests, single instance)
    TableBreakerStore   Azure Table Storage store (imports the SDK on first use)
    parse_retry_after   Retry-After / retry-after-ms / x-ms-retry-after-ms -> seconds

Modules: policy (settings), machine (pure state machine), store (protocol + the
read-modify-write loop), memory_store, table_store, breakers (facade), retry_after.
"""

from .breakers import Admission, Breakers
from .machine import CLOSED, HALF_OPEN, ISOLATED, OPEN, BreakerState
from .memory_store import MemoryBreakerStore
from .policy import BreakerSettings
from .retry_after import parse_retry_after
from .store import BreakerStore, StoreConflict, StoreUnavailable
from .table_store import TableBreakerStore

__all__ = [
    "Admission",
    "BreakerSettings",
    "BreakerState",
    "BreakerStore",
    "Breakers",
    "CLOSED",
    "HALF_OPEN",
    "ISOLATED",
    "MemoryBreakerStore",
    "OPEN",
    "StoreConflict",
    "StoreUnavailable",
    "TableBreakerStore",
    "parse_retry_after",
]
