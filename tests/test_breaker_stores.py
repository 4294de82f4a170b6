"""One contract for every breaker store (memory, and Table Storage on real Azurite),
plus the single-instance facade run over both."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace

import pytest

from shared.resilience import (
    Breakers,
    BreakerSettings,
    BreakerState,
    MemoryBreakerStore,
    StoreConflict,
    TableBreakerStore,
)
from shared.resilience.store import read_modify_write
from shared.storage import TableConnection

T0 = 1_800_000_000.0
FULL = BreakerState(
    state="half_open", epoch=7, state_since=T0 + 0.25,
    buckets=((T0 - 6.0, 12, 5), (T0, 3, 3)), consecutive_failures=4, open_until=T0 + 30.5,
    consecutive_opens=2, last_failure_class="http_503", probe_holder="inst-1#9", probe_expires=T0 + 60.0,
    last_cause="open period elapsed",
)


@pytest.fixture(params=["memory", "table"])
async def store(request):
    if request.param == "memory":
        s = MemoryBreakerStore()
    else:
        az = request.getfixturevalue("azurite")
        conn = TableConnection("test", connection_string=az.connection_string)
        s = TableBreakerStore.from_connection(conn, table_name=f"brk{uuid.uuid4().hex[:16]}")
    yield s
    await s.close()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# --- the store contract ----------------------------------------------------------------


async def test_get_missing_is_none(store):
    assert await store.get("nobody") is None


@pytest.mark.parametrize("provider", ["azure-openai-eastus", "openai/gpt-4o#eu?x", "naïve\\name ~1"])
async def test_create_then_get_round_trips_every_field(store, provider):
    etag = await store.create(provider, FULL)
    got = await store.get(provider)
    assert got is not None
    state, got_etag = got
    assert state == FULL
    assert got_etag == etag


async def test_create_existing_conflicts(store):
    await store.create("p", BreakerState())
    with pytest.raises(StoreConflict):
        await store.create("p", FULL)
    assert (await store.get("p"))[0] == BreakerState()


async def test_replace_is_etag_conditional(store):
    etag1 = await store.create("p", BreakerState())
    etag2 = await store.replace("p", FULL, etag1)
    assert etag2 != etag1
    with pytest.raises(StoreConflict):
        await store.replace("p", BreakerState(), etag1)
    assert await store.get("p") == (FULL, etag2)


async def test_replace_missing_row_conflicts(store):
    etag = await store.create("p", BreakerState())
    with pytest.raises(StoreConflict):
        await store.replace("q", BreakerState(), etag)


async def test_list_returns_every_breaker(store):
    for name in ("b", "a", "c/d"):
        await store.create(name, replace(FULL, last_cause=name))
    rows = await store.list()
    assert sorted((p, s.last_cause) for p, s, _ in rows) == [("a", "a"), ("b", "b"), ("c/d", "c/d")]


async def test_concurrent_read_modify_write_loses_no_update(store):
    def bump(s):
        s = s or BreakerState()
        return replace(s, consecutive_failures=s.consecutive_failures + 1), None

    await asyncio.gather(*(read_modify_write(store, "p", bump, attempts=50) for _ in range(12)))
    state, _ = await store.get("p")
    assert state.consecutive_failures == 12


async def test_calls_are_counted(store):
    before = store.calls
    await store.get("p")
    assert store.calls > before


# --- the facade on one instance, over both stores --------------------------------------


def make(store, clock, **settings):
    st = BreakerSettings.from_dict(settings)
    events: list[tuple[str, str, str, str]] = []
    b = Breakers(store, settings_for=lambda _p: st, clock=clock,
                 on_transition=lambda *a: events.append(a), instance_id="solo", store_timeout=5.0)
    return b, events


async def test_breaker_trips_probes_and_closes(store):
    clock = Clock()
    b, events = make(store, clock, consecutive_failures=3, open_seconds=10)
    for _ in range(3):
        adm = await b.admit("a")
        assert adm.allowed
        await b.record(adm, ok=False, failure_class="timeout")
        clock.advance(0.01)
    adm = await b.admit("a")
    assert not adm.allowed and adm.state == "open"
    assert adm.reason.startswith("breaker open until ") and "(retry in 10.0s)" in adm.reason
    assert adm.retry_after == pytest.approx(9.99)
    clock.advance(10)
    probe = await b.admit("a")
    assert probe.allowed and probe.probe and probe.state == "half_open"
    other = await b.admit("a")
    assert not other.allowed and other.state == "half_open"
    await b.record(probe, ok=True, latency=0.2)
    assert (await b.admit("a")).state == "closed"
    assert [(f, t) for _, f, t, _ in events] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    await b.close()


async def test_retry_after_30s_keeps_provider_out_exactly_30s(store):
    clock = Clock()
    b, _ = make(store, clock, open_seconds=5)
    adm = await b.admit("a")
    await b.record(adm, ok=False, failure_class="http_429", retry_after=30.0)
    for dt in (0.0, 1.0, 15.0, 29.0, 29.9, 29.999):
        clock.t = T0 + dt
        adm = await b.admit("a")
        assert not adm.allowed, dt
        assert adm.retry_after == pytest.approx(30.0 - dt, abs=1e-6)
    clock.t = T0 + 30.0
    adm = await b.admit("a")
    assert adm.allowed and adm.probe
    await b.close()


async def test_steady_state_admits_make_no_store_call(store):
    clock = Clock()
    b, _ = make(store, clock)
    adm = await b.admit("a")
    await b.record(adm, ok=True)
    calls = store.calls
    for _ in range(200):
        adm = await b.admit("a")
        await b.record(adm, ok=True, latency=0.05)
        clock.advance(0.004)  # 200 calls in 0.8 s < staleness and flush interval
    assert store.calls == calls
    clock.advance(0.3)
    await b.admit("a")  # stale: one list call re-reads every provider
    assert store.calls - calls == 1
    clock.advance(7.0)  # successes-only outcomes go out once per window bucket (6 s, + up to 25% jitter)
    await b.record(await b.admit("a"), ok=True)
    await asyncio.gather(*b._tasks)
    assert store.calls - calls == 4  # list + get + replace
    stored, _ = await store.get("a")
    assert stored.window_counts(BreakerSettings(), clock()) == (202, 0)
    await b.close()


async def test_background_loop_and_close_flush_pending_outcomes(store):
    clock = Clock()
    st = BreakerSettings.from_dict({"consecutive_failures": 0, "min_calls": 1000})
    b = Breakers(store, settings_for=lambda _p: st, clock=clock, instance_id="bg", flush_tick=0.005)
    await b.start()
    await b.record(await b.admit("a"), ok=False, failure_class="timeout")
    clock.advance(1.3)  # due (1 s + jitter); the loop (real time, 5 ms tick) writes it without any request
    for _ in range(400):  # bounded wait for the background task
        got = await store.get("a")
        if got is not None and got[0].window_counts(st, clock())[1] == 1:
            break
        await asyncio.sleep(0.005)
    else:
        pytest.fail("background flush did not happen")
    await b.record(await b.admit("b"), ok=False, failure_class="timeout")
    await b.close()  # not due yet: close flushes it anyway
    if store.kind == "memory":  # (the table store's client is closed with `b`)
        got = await store.get("b")
        assert got is not None and got[0].consecutive_failures == 1


class GatedStore(MemoryBreakerStore):
    """A memory store whose list query counts its calls and can be made to hang."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def list(self):
        self.lists += 1
        await self.gate.wait()
        return await super().list()


async def _until(condition, what: str) -> None:
    for _ in range(400):  # bounded wait for the background task (5 ms ticks)
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail(what)


async def test_the_background_task_reads_ahead_so_no_request_waits_for_the_store():
    clock = Clock()
    store = GatedStore()
    st = BreakerSettings.from_dict({"cache_staleness_seconds": 1.0})
    b = Breakers(store, settings_for=lambda _p: st, clock=clock, instance_id="ahead", flush_tick=0.005,
                 store_timeout=5.0)
    await b.start()
    try:
        assert (await b.admit("a")).allowed  # first look: read inline
        assert store.lists == 1
        clock.advance(0.999)  # the view goes stale within one tick: the loop reads it again
        assert (await b.admit("a")).allowed
        await _until(lambda: store.lists == 2, "the background task did not read ahead")
        store.gate.clear()  # from now on a list query hangs
        clock.advance(0.5)  # a request now would have found a view read 1.5 s ago
        adm = await asyncio.wait_for(b.admit("a"), 0.5)  # without reading ahead: stuck on the store
        assert adm.allowed and store.lists == 2
        store.gate.set()

        clock.advance(10.6)  # quiet for longer than the read-ahead window: no more reads
        before = store.lists
        await asyncio.sleep(0.05)  # ten ticks of the loop
        assert store.lists == before
        assert (await b.admit("a")).allowed  # the first request after the quiet spell reads inline
        assert store.lists == before + 1
    finally:
        store.gate.set()
        await b.close()


async def test_transition_log_event_and_a_failing_hook(store, caplog):
    clock = Clock()

    def hook(*_a):
        raise RuntimeError("telemetry down")

    b = Breakers(store, settings_for=lambda _p: BreakerSettings.from_dict({"consecutive_failures": 1}),
                 clock=clock, on_transition=hook, instance_id="x")
    with caplog.at_level(logging.INFO, logger="shared.resilience"):
        await b.record(await b.admit("a"), ok=False, failure_class="http_500")
    assert not (await b.admit("a")).allowed, "a failing hook changes nothing"
    ev = [r for r in caplog.records if getattr(r, "event", None) == "breaker_transition"]
    assert len(ev) == 1
    assert (ev[0].provider, ev[0].from_state, ev[0].to_state) == ("a", "closed", "open")
    assert ev[0].cause == "1 consecutive failures"
    await b.close()


async def test_status_lists_breakers_this_instance_never_used(store):
    clock = Clock()
    one, _ = make(store, clock, consecutive_failures=1)
    two, _ = make(store, clock)
    await one.record(await one.admit("a"), ok=False, failure_class="timeout")
    rows = await two.status()
    assert [(r["provider"], r["state"]) for r in rows] == [("a", "open")]
    await one.close()


async def test_isolate_and_reset(store):
    clock = Clock()
    b, events = make(store, clock)
    row = await b.isolate("a")
    assert row["state"] == "isolated"
    clock.advance(100_000)
    adm = await b.admit("a")
    assert not adm.allowed and adm.state == "isolated" and adm.retry_after is None
    row = await b.reset("a")
    assert row["state"] == "closed"
    assert (await b.admit("a")).allowed
    assert [(f, t) for _, f, t, _ in events] == [("closed", "isolated"), ("isolated", "closed")]
    await b.close()


async def test_release_frees_the_probe(store):
    clock = Clock()
    b, _ = make(store, clock, consecutive_failures=1, open_seconds=5, probe_lease_seconds=30)
    await b.record(await b.admit("a"), ok=False, failure_class="connect_error")
    clock.advance(5)
    probe = await b.admit("a")
    assert probe.probe
    assert not (await b.admit("a")).allowed
    await b.release(probe)
    again = await b.admit("a")
    assert again.allowed and again.probe
    await b.close()


async def test_status_fields(store):
    clock = Clock()
    b, _ = make(store, clock, consecutive_failures=2)
    await b.record(await b.admit("a"), ok=False, failure_class="http_502")
    await b.record(await b.admit("a"), ok=False, failure_class="http_503")
    await b.record(await b.admit("b"), ok=True)
    clock.advance(2.5)
    rows = {r["provider"]: r for r in await b.status()}
    a = rows["a"]
    assert a["state"] == "open" and a["failures"] == 2 and a["calls"] == 2
    assert a["consecutive_failures"] == 2 and a["consecutive_opens"] == 1
    assert a["open_until"].endswith("Z") and a["last_failure_class"] == "http_503"
    assert a["state_age_seconds"] == pytest.approx(2.5)
    assert a["store"] == store.kind and a["degraded"] is False and a["last_store_error"] is None
    assert a["stale"] is False, "status re-read the store"
    assert set(a) >= {"probe_holder", "stale", "degraded", "store", "last_store_error"}
    assert rows["b"]["state"] == "closed"
    await b.close()


async def test_memory_store_outage_is_survived_logged_once_and_reconciled(caplog):
    store = MemoryBreakerStore()
    clock = Clock()
    b, events = make(store, clock, consecutive_failures=3, open_seconds=10)
    await b.record(await b.admit("a"), ok=True)
    clock.advance(2)
    store.down = True
    with caplog.at_level(logging.WARNING, logger="shared.resilience"):
        for _ in range(20):
            adm = await b.admit("a")
            if adm.allowed:
                await b.record(adm, ok=False, failure_class="timeout")
            clock.advance(0.3)
        rows = await b.status()
    outage_logs = [r for r in caplog.records if getattr(r, "event", None) == "breaker_store_degraded"]
    assert len(outage_logs) == 1
    assert rows[0]["degraded"] is True and "down" in rows[0]["last_store_error"]
    assert rows[0]["state"] == "open", "tripped locally on local counts"
    assert events[-1][3].endswith("(local; store unavailable)")
    store.down = False
    clock.advance(1)
    await b.refresh()
    stored, _ = await store.get("a")
    assert stored.state == "open" and stored.consecutive_failures == 3
    assert (await b.status())[0]["degraded"] is False
    await b.close()


async def test_slow_store_is_bounded_by_the_timeout_and_never_blocks_twice():
    import time as _time

    store = MemoryBreakerStore()
    clock = Clock()
    st = BreakerSettings.from_dict({"consecutive_failures": 2})
    b = Breakers(store, settings_for=lambda _p: st, clock=clock, instance_id="slow", store_timeout=0.05)
    await b.record(await b.admit("a"), ok=True)
    store.delay = 30.0  # hangs: every call would take 30 s
    clock.advance(2)
    started = _time.monotonic()
    first = await b.admit("a")  # stale: waits for the store at most store_timeout
    assert first.allowed
    for _ in range(50):  # degraded now: no request waits for the store
        adm = await b.admit("a")
        if adm.allowed:
            await b.record(adm, ok=False, failure_class="timeout")
        clock.advance(0.1)
    elapsed = _time.monotonic() - started
    assert elapsed < 1.0, elapsed
    rows = await b.status()
    assert rows[0]["degraded"] is True and "TimeoutError" in rows[0]["last_store_error"]
    assert rows[0]["state"] == "open"
    store.delay = 0.0
    await b.close()
