"""`Breakers`: one circuit breaker per provider, shared by every instance via a store.

The router's view:

    adm = await breakers.admit("p")          # cheap with a warm cache: no I/O
    if adm.allowed: ... call p ...
    await breakers.record(adm, ok=False, failure_class="http_503", retry_after=30.0)

How the cost stays low (see docs/breakers.md):
- each instance keeps the provider's stored state plus the outcomes it counted since
  its last flush; decisions use that view, so a steady-state `admit` makes no store call;
- the view is re-read when older than `cache_staleness_seconds`: one list query
  refreshes every provider (one store call per instance per staleness period, only
  while requests arrive); the background task (`start()`) makes that read a tick before
  the view goes stale, so under steady traffic no request waits for the store;
- outcomes are flushed in aggregate, one read-modify-write per provider: failures every
  `flush_interval_seconds`, successes-only deltas every window bucket (window/10), and
  at once when the local view trips;
- only a half-open probe claim, a probe's result and manual control write on their own.

A store failure never reaches the caller: the instance goes on with its view and local
counting (a locally tripped breaker opens for this instance; a local probe closes it),
logs the outage once, shows `degraded` in status, and reconciles on the next
successful call (pending counts and manual commands are replayed).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable

from . import machine as m
from .machine import BreakerState, Outcomes, Transition
from .policy import BreakerSettings
from .store import BreakerStore, read_modify_write

log = logging.getLogger("shared.resilience")

TransitionHook = Callable[[str, str, str, str], Any]
Op = Callable[[BreakerState], tuple[BreakerState, Transition | None]]

_DEFAULT = BreakerSettings()
_MAX_REPLAY = 16
_REFRESH_AHEAD_IDLE_S = 10.0
"""The background task re-reads views ahead of time only while an `admit` came this recently:
an idle instance makes no reads, and its first request after a quiet spell reads inline."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The breaker's answer for one attempt; pass it back to `record`/`release`."""

    provider: str
    allowed: bool
    state: str
    probe: bool = False
    reason: str | None = None
    retry_after: float | None = None
    epoch: int = 0
    token: str | None = None


def _flush_due(e: "_Entry", st: BreakerSettings, now: float, jitter: float = 0.0) -> bool:
    """Failures go out every flush interval; a delta of successes only may wait one
    window bucket (window/10): holding successes back can only make the failure ratio
    other instances see higher, i.e. more cautious, never hide a failure. `jitter`
    (a per-instance fraction) keeps instances from flushing the same row in lockstep."""
    if e.pending.failures or e.pending.retry_after_until:
        interval = st.flush_interval_seconds
    else:
        interval = max(st.flush_interval_seconds, st.window_seconds / m.BUCKETS)
    return now - e.pending.first_at >= interval * (1.0 + jitter)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Entry:
    __slots__ = ("provider", "stored", "view", "synced_at", "pending", "replay", "lock", "next_attempt_at", "allow")

    def __init__(self, provider: str, now: float) -> None:
        self.provider = provider
        self.stored: BreakerState | None = None
        self.view = BreakerState(state_since=now)
        self.synced_at = -math.inf
        self.pending = Outcomes()
        self.replay: list[Op] = []
        self.lock = asyncio.Lock()
        self.next_attempt_at = -math.inf
        self.allow = Admission(provider, True, m.CLOSED, epoch=0)
        """The (immutable) answer for a closed breaker, reused while the epoch holds."""


class Breakers:
    def __init__(
        self,
        store: BreakerStore,
        settings_for: Callable[[str], BreakerSettings] | None = None,
        clock: Callable[[], float] = time.time,
        on_transition: TransitionHook | None = None,
        instance_id: str | None = None,
        *,
        store_timeout: float = 1.0,
        flush_tick: float = 0.25,
    ) -> None:
        self._store = store
        self._settings_for = settings_for or (lambda _p: _DEFAULT)
        self._clock = clock
        self._on_transition = on_transition
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._timeout = store_timeout
        self._tick = flush_tick
        self._jitter = random.Random(self.instance_id).random() * 0.25
        self._entries: dict[str, _Entry] = {}
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._closing = False
        self._refresh_lock = asyncio.Lock()
        self._next_refresh_at = -math.inf
        self._last_admit = -math.inf
        self.degraded = False
        self.degraded_since: float | None = None
        self.last_store_error: str | None = None
        self.last_store_error_at: float | None = None

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the background flush (outcomes go out even when requests stop)."""
        if self._loop_task is None and not self._closing:
            self._loop_task = asyncio.create_task(self._flush_loop(), name="breakers-flush")

    async def close(self) -> None:
        """Final flush, stop background work, close the store's client."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), self._timeout * 2)
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            log.warning("breaker final flush incomplete: %s", type(exc).__name__)
        try:
            await asyncio.wait_for(self._store.close(), self._timeout)
        except Exception as exc:  # noqa: BLE001 - closing must not raise
            log.debug("breaker store close failed: %s", exc)

    async def _flush_loop(self) -> None:
        while not self._closing:  # ends with close()
            await asyncio.sleep(self._tick)
            await self.flush(due_only=True)
            await self._refresh_ahead()

    async def _refresh_ahead(self) -> None:
        """Re-read every view within a tick of going stale, while requests are arriving, so
        that the request which would find it stale does not make (and wait for) the read."""
        if self.degraded or self._closing or self._refresh_lock.locked() or not self._entries:
            return
        now = self._clock()
        if now - self._last_admit > _REFRESH_AHEAD_IDLE_S:
            return
        due = min(e.synced_at + self._settings_for(p).cache_staleness_seconds for p, e in self._entries.items())
        if now + self._tick >= due:
            await self._refresh_all(now)

    # --- the router's calls ---------------------------------------------------------

    async def admit(self, provider: str) -> Admission:
        """May this attempt go to `provider`? Never raises; fails open on a bug."""
        try:
            now = self._last_admit = self._clock()
            e = self._entries.get(provider)
            if e is None:
                e = self._entries[provider] = _Entry(provider, now)
            st = self._settings_for(provider)
            if now - e.synced_at >= st.cache_staleness_seconds:
                if self.degraded:
                    if now >= self._next_refresh_at and not self._refresh_lock.locked():
                        self._spawn_refresh()
                elif not self._refresh_lock.locked() and not e.lock.locked():
                    await self._refresh_all(now)  # one store call refreshes every provider
                    now = self._clock()
                elif e.synced_at == -math.inf:
                    # first look at this provider while a read is in flight: wait for it
                    async with self._refresh_lock:
                        pass
                    if e.synced_at == -math.inf and e.lock.locked():
                        async with e.lock:
                            pass
                    now = self._clock()
            v = e.view
            if v.state == m.CLOSED:
                allow = e.allow
                if allow.epoch != v.epoch:
                    allow = e.allow = Admission(provider, True, m.CLOSED, epoch=v.epoch)
                return allow
            return await self._admit_not_closed(e, st, now)
        except Exception:  # noqa: BLE001
            log.exception("breaker admit failed for %s; allowing", provider)
            return Admission(provider, True, m.CLOSED, reason="breaker error (allowed)")

    async def _admit_not_closed(self, e: _Entry, st: BreakerSettings, now: float) -> Admission:
        v = e.view
        wants_probe = (v.state == m.OPEN and now >= v.open_until) or (v.state == m.HALF_OPEN and not v.probe_busy(now))
        if not wants_probe:
            return self._answer(e, now)
        if e.lock.locked():
            return Admission(e.provider, False, m.HALF_OPEN, reason="breaker half-open: a probe is being claimed",
                             retry_after=1.0, epoch=v.epoch)
        token = f"{self.instance_id}#{next(self._tokens)}"

        def claim(s: BreakerState) -> tuple[BreakerState, Transition | None]:
            ns, tr = m.claim_probe(s, st, now, token)
            return (ns if ns is not None else s), tr

        async with e.lock:
            await self._sync(e, st, now, op=claim, local_fallback=True, force=False)
        return self._answer(e, now, token)

    def _answer(self, e: _Entry, now: float, token: str | None = None) -> Admission:
        v = e.view
        p = e.provider
        if v.state == m.CLOSED:
            return Admission(p, True, m.CLOSED, epoch=v.epoch)
        if v.state == m.HALF_OPEN and token is not None and v.probe_holder == token:
            return Admission(p, True, m.HALF_OPEN, probe=True, reason="half-open probe", epoch=v.epoch, token=token)
        if v.state == m.ISOLATED:
            return Admission(p, False, m.ISOLATED, reason="breaker isolated by an operator (reset to restore)",
                             epoch=v.epoch)
        if v.state == m.OPEN and now < v.open_until:
            wait = v.open_until - now
            return Admission(p, False, m.OPEN, reason=f"breaker open until {iso(v.open_until)} (retry in {wait:.1f}s)",
                             retry_after=wait, epoch=v.epoch)
        return Admission(p, False, m.HALF_OPEN, reason="breaker half-open: a probe is in flight", retry_after=1.0,
                         epoch=v.epoch)

    async def record(
        self,
        adm: Admission,
        ok: bool,
        latency: float | None = None,
        failure_class: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The attempt's outcome. Only real provider failures should arrive as ok=False
        (connection, timeout, 408, 429, 5xx, broken stream); caller-caused 4xx are not
        recorded as failures. Never raises."""
        try:
            if not adm.allowed:
                return
            e = self._entries.get(adm.provider)
            if e is None:
                return
            st = self._settings_for(adm.provider)
            now = self._clock()
            if adm.probe:
                ra_until = now + min(retry_after, st.max_retry_after_seconds) if (not ok and retry_after and retry_after > 0) else 0.0
                token = adm.token or ""

                def result(s: BreakerState) -> tuple[BreakerState, Transition | None]:
                    return m.probe_result(s, st, now, token, ok, failure_class, ra_until)

                async with e.lock:
                    await self._sync(e, st, now, op=result, local_fallback=True, replay=True, force=False)
                return
            one = Outcomes()
            if adm.epoch == e.view.epoch:
                e.pending.add(ok, now, st, adm.epoch, failure_class, retry_after)
                one.add(ok, now, st, adm.epoch, failure_class, retry_after)
            elif not ok and retry_after:
                e.pending.note_retry_after(now, st, retry_after)
                one.note_retry_after(now, st, retry_after)
            else:
                return
            e.view, tr = m.apply_outcomes(e.view, one, st, now)
            if tr is not None:
                async with e.lock:  # flush now: the trip is what other instances must see
                    if not await self._sync(e, st, now, force=False):
                        self._emit(adm.provider, tr, local=True)
            elif not e.lock.locked() and _flush_due(e, st, now, self._jitter) and not (self.degraded and now < e.next_attempt_at):
                self._spawn(e)
        except Exception:  # noqa: BLE001
            log.exception("breaker record failed for %s", adm.provider)

    async def release(self, adm: Admission) -> None:
        """The attempt was abandoned without an outcome: give back a probe lease."""
        try:
            if not adm.probe or adm.provider not in self._entries:
                return
            e = self._entries[adm.provider]
            st = self._settings_for(adm.provider)
            token = adm.token or ""

            def give_back(s: BreakerState) -> tuple[BreakerState, Transition | None]:
                return m.release_probe(s, token), None

            async with e.lock:
                await self._sync(e, st, self._clock(), op=give_back, local_fallback=True, force=False)
        except Exception:  # noqa: BLE001
            log.exception("breaker release failed for %s", adm.provider)

    # --- manual control ---------------------------------------------------------------

    async def reset(self, provider: str) -> dict[str, Any]:
        """Close the breaker (clears counts and backoff). Returns the provider's status."""
        return await self._command(provider, lambda s, now: m.reset(s, now))

    async def isolate(self, provider: str) -> dict[str, Any]:
        """Hold the breaker open until `reset`."""
        return await self._command(provider, lambda s, now: m.isolate(s, now))

    async def _command(self, provider: str, fn: Callable[[BreakerState, float], tuple[BreakerState, Transition | None]]) -> dict[str, Any]:
        now = self._clock()
        e = self._entries.get(provider)
        if e is None:
            e = self._entries[provider] = _Entry(provider, now)
        st = self._settings_for(provider)
        async with e.lock:
            await self._sync(e, st, now, op=lambda s: fn(s, now), local_fallback=True, replay=True)
        return self._row(e, st, self._clock())

    # --- status -------------------------------------------------------------------------

    async def status(self) -> list[dict[str, Any]]:
        """One row per provider known here or in the store. One store call (a list)."""
        now = self._clock()
        async with self._refresh_lock:
            await self._refresh_all_locked(now)
        return [self._row(e, self._settings_for(p), now) for p, e in sorted(self._entries.items())]

    def _row(self, e: _Entry, st: BreakerSettings, now: float) -> dict[str, Any]:
        v = e.view
        calls, failures = v.window_counts(st, now)
        return {
            "provider": e.provider,
            "state": v.state,
            "calls": calls,
            "failures": failures,
            "window_seconds": st.window_seconds,
            "consecutive_failures": v.consecutive_failures,
            "open_until": iso(v.open_until) if v.state == m.OPEN else None,
            "consecutive_opens": v.consecutive_opens,
            "last_failure_class": v.last_failure_class,
            "last_cause": v.last_cause,
            "probe_holder": v.probe_holder if v.probe_busy(now) else None,
            "state_age_seconds": round(max(0.0, now - v.state_since), 3),
            "stale": now - e.synced_at > st.cache_staleness_seconds,
            "pending_outcomes": e.pending.successes + e.pending.failures,
            "degraded": self.degraded,
            "store": self._store.kind,
            "last_store_error": self.last_store_error,
            "instance": self.instance_id,
        }

    # --- flushing -------------------------------------------------------------------------

    async def flush(self, *, due_only: bool = False) -> None:
        """Write pending outcomes (all, or only those due). Never raises."""
        now = self._clock()
        for e in list(self._entries.values()):
            if e.lock.locked():
                continue
            st = self._settings_for(e.provider)
            has_work = not e.pending.empty or bool(e.replay)
            if not has_work:
                continue
            if due_only:
                if self.degraded and now < e.next_attempt_at:
                    continue
                if not e.replay and not _flush_due(e, st, now, self._jitter):
                    continue
            async with e.lock:
                await self._sync(e, st, now)

    async def refresh(self) -> None:
        """Flush everything pending and re-read every breaker now (reconcile after an
        outage without waiting for the staleness period). Never raises."""
        await self.flush()
        now = self._clock()
        async with self._refresh_lock:
            await self._refresh_all_locked(now)

    async def _refresh_all(self, now: float) -> None:
        if self._refresh_lock.locked():
            return
        async with self._refresh_lock:
            await self._refresh_all_locked(now)

    async def _refresh_all_locked(self, now: float) -> None:
        """One list call updates every cached breaker not busy with its own write."""
        try:
            rows = await asyncio.wait_for(self._store.list(), self._timeout)
        except Exception as exc:  # noqa: BLE001
            self._store_failed(exc)
            self._next_refresh_at = now + 0.5
            return
        self._store_ok()
        found = {p: s for p, s, _etag in rows}
        for p in found:
            if p not in self._entries:
                self._entries[p] = _Entry(p, now)
        for p, e in list(self._entries.items()):
            if e.lock.locked():
                continue  # its own read-modify-write will refresh it
            if e.replay:
                self._spawn(e)
                continue
            st = self._settings_for(p)
            stored = found.get(p)
            e.stored = stored
            e.synced_at = now
            base = stored if stored is not None else BreakerState(state_since=now)
            e.view, tr = m.apply_outcomes(base, e.pending, st, now, any_epoch=stored is None)
            if tr is not None:
                self._spawn(e)  # pending outcomes trip it: write that now

    def _spawn_refresh(self) -> None:
        if self._closing:
            return

        async def run() -> None:
            await self._refresh_all(self._clock())

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, e: _Entry) -> None:
        if self._closing:
            return

        async def run() -> None:
            if e.lock.locked():
                return
            async with e.lock:
                await self._sync(e, self._settings_for(e.provider), self._clock(), force=False)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync(
        self, e: _Entry, st: BreakerSettings, now: float, op: Op | None = None,
        *, local_fallback: bool = False, replay: bool = False, force: bool = True,
    ) -> bool:
        """Flush pending outcomes (+ replayed commands, + `op`) in one read-modify-write,
        and refresh the view. Caller holds `e.lock`. False when the store failed.
        With `force=False` (request paths), a store known to be down is not retried
        before `next_attempt_at`: the request goes on locally at once."""
        if not force and self.degraded and now < e.next_attempt_at:
            if op is not None:
                self._apply_locally(e, op, replay, local_fallback)
            return False
        snapshot, e.pending = e.pending, Outcomes()
        replays = list(e.replay)

        def mutate(stored: BreakerState | None) -> tuple[BreakerState | None, list[Transition]]:
            base = stored if stored is not None else BreakerState(state_since=now)
            s, tr = m.apply_outcomes(base, snapshot, st, now, any_epoch=stored is None)
            trs = [tr] if tr else []
            for fn in replays + ([op] if op else []):
                s, tr = fn(s)
                if tr:
                    trs.append(tr)
            if s is base and stored is not None:
                return None, trs
            if stored is None and snapshot.empty and not trs and s == base:
                return None, trs  # nothing worth creating a row for
            return s, trs

        try:
            stored, _etag, trs = await asyncio.wait_for(
                read_modify_write(self._store, e.provider, mutate), self._timeout
            )
        except BaseException as exc:
            e.pending = e.pending.merged_after(snapshot)
            if not isinstance(exc, Exception):
                raise  # cancelled: counts are kept for the next flush
            self._store_failed(exc)
            e.next_attempt_at = now + max(st.cache_staleness_seconds, 0.5)
            if op is not None:
                self._apply_locally(e, op, replay, local_fallback)
            return False
        self._store_ok()
        e.replay = e.replay[len(replays):]
        e.stored = stored
        e.synced_at = now
        base = stored if stored is not None else BreakerState(state_since=now)
        e.view, _ = m.apply_outcomes(base, e.pending, st, now)  # outcomes that came in meanwhile
        for tr in trs:
            self._emit(e.provider, tr)
        return True

    def _apply_locally(self, e: _Entry, op: Op, replay: bool, local_fallback: bool) -> None:
        if replay:
            e.replay = (e.replay + [op])[-_MAX_REPLAY:]
        if local_fallback:
            e.view, tr = op(e.view)
            if tr is not None:
                self._emit(e.provider, tr, local=True)

    # --- store health and events ---------------------------------------------------------

    def _store_failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (store call exceeded {self._timeout}s)" if isinstance(exc, TimeoutError) else type(exc).__name__
        self.last_store_error = text[:300]
        self.last_store_error_at = self._clock()
        if not self.degraded:
            self.degraded = True
            self.degraded_since = self.last_store_error_at
            log.warning(
                "breaker store (%s) unavailable; continuing on cached state and local counts: %s",
                self._store.kind, self.last_store_error,
                extra={"event": "breaker_store_degraded", "store": self._store.kind, "instance": self.instance_id},
            )

    def _store_ok(self) -> None:
        if self.degraded:
            took = self._clock() - (self.degraded_since or self._clock())
            self.degraded = False
            self.degraded_since = None
            log.warning(
                "breaker store (%s) available again after %.1fs; state reconciled", self._store.kind, took,
                extra={"event": "breaker_store_recovered", "store": self._store.kind, "instance": self.instance_id},
            )

    def _emit(self, provider: str, tr: Transition, *, local: bool = False) -> None:
        cause = f"{tr.cause} (local; store unavailable)" if local else tr.cause
        log.log(
            logging.WARNING if tr.to_state in (m.OPEN, m.ISOLATED) else logging.INFO,
            "breaker %s: %s -> %s (%s)", provider, tr.from_state, tr.to_state, cause,
            extra={"event": "breaker_transition", "provider": provider, "from_state": tr.from_state,
                   "to_state": tr.to_state, "cause": cause, "instance": self.instance_id},
        )
        if self._on_transition is not None:
            try:
                self._on_transition(provider, tr.from_state, tr.to_state, cause)
            except Exception:  # noqa: BLE001
                log.exception("on_transition hook failed")
