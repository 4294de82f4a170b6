"""In-memory breaker store: unit tests and single-instance use.

Shared by every `Breakers` given the same object; same ETag semantics as the Table
store. `down = True` makes every call fail with `StoreUnavailable`, `delay = 5.0` makes
every call hang that long (outage drills).
"""

from __future__ import annotations

import asyncio
import itertools

from .machine import BreakerState
from .store import StoreConflict, StoreUnavailable


class MemoryBreakerStore:
    kind = "memory"

    def __init__(self) -> None:
        self._rows: dict[str, tuple[BreakerState, str]] = {}
        self._etags = itertools.count(1)
        self.calls = 0
        self.down = False
        self.delay = 0.0
        self.closed = False

    def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("memory store is down (simulated)")

    async def _pause(self) -> None:
        await asyncio.sleep(self.delay)  # 0: a real await point, like a network call

    async def get(self, provider: str) -> tuple[BreakerState, str] | None:
        self._enter()
        await self._pause()
        return self._rows.get(provider)

    async def create(self, provider: str, state: BreakerState) -> str:
        self._enter()
        await self._pause()
        if provider in self._rows:
            raise StoreConflict(f"breaker {provider!r} already exists")
        etag = f'W/"{next(self._etags)}"'
        self._rows[provider] = (state, etag)
        return etag

    async def replace(self, provider: str, state: BreakerState, etag: str) -> str:
        self._enter()
        await self._pause()
        current = self._rows.get(provider)
        if current is None or current[1] != etag:
            raise StoreConflict(f"breaker {provider!r} changed since read")
        new = f'W/"{next(self._etags)}"'
        self._rows[provider] = (state, new)
        return new

    async def list(self) -> list[tuple[str, BreakerState, str]]:
        self._enter()
        await self._pause()
        return [(p, s, e) for p, (s, e) in sorted(self._rows.items())]

    async def close(self) -> None:
        self.closed = True
