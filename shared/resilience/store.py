"""Where breaker state is shared: a small async protocol with optimistic concurrency.

A store keeps one `BreakerState` per provider with an opaque ETag. `replace` succeeds
only when the ETag still matches (someone else's write in between -> `StoreConflict`),
`create` only when the row does not exist yet (-> `StoreConflict` too). Every other
failure (network, timeout, throttling, missing table after a restart) is the store
being unavailable: `StoreUnavailable`, or any exception the facade treats alike.

`read_modify_write` is the one loop that changes shared state: read, apply a pure
function, write conditionally, and on a conflict re-read and re-apply, so no counted
failure and no transition is lost when instances write at the same time.
"""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar, runtime_checkable

from .machine import BreakerState

T = TypeVar("T")


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreConflict(StoreError):
    """The row changed (412) or already exists (409): re-read and re-apply."""


class StoreUnavailable(StoreError):
    """The store could not be reached or refused the call for another reason."""


@runtime_checkable
class BreakerStore(Protocol):
    kind: str
    """"memory" or "table" (shown in status)."""
    calls: int
    """Store operations made so far (for tests and the benchmark)."""

    async def get(self, provider: str) -> tuple[BreakerState, str] | None: ...

    async def create(self, provider: str, state: BreakerState) -> str:
        """Insert a new row; returns its ETag. `StoreConflict` when it exists."""
        ...

    async def replace(self, provider: str, state: BreakerState, etag: str) -> str:
        """Overwrite if the ETag matches; returns the new ETag. `StoreConflict` when the
        row changed; `StoreConflict` also when it vanished (the loop then creates it)."""
        ...

    async def list(self) -> list[tuple[str, BreakerState, str]]: ...

    async def close(self) -> None: ...


Mutation = Callable[[BreakerState | None], tuple[BreakerState | None, T]]
"""Gets the stored state (None: no row yet); returns (state to write or None for no
write, a result for the caller)."""


async def read_modify_write(
    store: BreakerStore, provider: str, fn: Mutation[T], *, attempts: int = 8
) -> tuple[BreakerState | None, str | None, T]:
    """Apply `fn` to the stored state until a conditional write wins (bounded).

    Returns (state now stored, its ETag, fn's result of the winning attempt)."""
    last: Exception | None = None
    for _ in range(attempts):
        current = await store.get(provider)
        stored, etag = current if current is not None else (None, None)
        new, result = fn(stored)
        if new is None:
            return stored, etag, result
        try:
            if etag is None:
                etag = await store.create(provider, new)
            else:
                etag = await store.replace(provider, new, etag)
        except StoreConflict as exc:
            last = exc
            continue
        return new, etag, result
    raise StoreUnavailable(f"breaker {provider!r}: {attempts} conflicting writes in a row") from last
