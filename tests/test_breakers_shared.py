"""Several `Breakers` instances (own caches, own Table clients) sharing one Azurite table.

A shared fake clock drives every instance; nothing sleeps."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest

from shared.resilience import Breakers, BreakerSettings, TableBreakerStore
from shared.storage import TableConnection

T0 = 1_800_000_000.0
N = 4


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
async def fleet():
    """Builds instances; closes every one at teardown (even when the test failed)."""
    made: list[Breakers] = []

    def build(*args, **kwargs):
        instances, events, st = _fleet(*args, **kwargs)
        made.extend(instances)
        return instances, events, st

    yield build
    await asyncio.gather(*(b.close() for b in made))


def _fleet(connection_string: str, clock: Clock, n: int = N, table: str | None = None, store_timeout: float = 5.0, **settings):
    table = table or f"brk{uuid.uuid4().hex[:16]}"
    st = BreakerSettings.from_dict(settings)
    events: list[tuple[float, str, str, str, str, str]] = []
    instances = []
    for i in range(n):
        store = TableBreakerStore.from_connection(TableConnection("test", connection_string=connection_string), table)
        name = f"inst{i}"
        instances.append(Breakers(
            store, settings_for=lambda _p: st, clock=clock, instance_id=name, store_timeout=store_timeout,
            on_transition=lambda p, f, t, c, name=name: events.append((clock(), name, p, f, t, c)),
        ))
    return instances, events, st


@pytest.mark.parametrize("a_every", [1, 7], ids=["all-call-A", "others-rarely-call-A"])
async def test_failing_provider_is_skipped_everywhere_within_the_staleness_bound(azurite, fleet, a_every):
    """The router loop: try A, on failure fall back to B. With a_every=7 only inst0 sends
    every request to A; the others try A once in 7 requests, too rarely to trip on their
    own counts within the test: they must learn of the trip from the shared state."""
    clock = Clock()
    dt = 0.1
    instances, events, st = fleet(azurite.connection_string, clock, consecutive_failures=5, open_seconds=10,
                                  cache_staleness_seconds=1.0, flush_interval_seconds=1.0)
    reached_a: list[tuple[float, str, bool]] = []  # (time, instance, probe)
    client_failures = 0
    steps = int(20 / dt)  # 20 s: trip, the 10 s open window, a failed probe, part of the 20 s re-open
    for step in range(steps):
        for i, b in enumerate(instances):
            served = False
            adm = await b.admit("A") if (i == 0 or step % a_every == 0) else None
            if adm is not None and adm.allowed:
                reached_a.append((clock(), b.instance_id, adm.probe))
                await b.record(adm, ok=False, failure_class="http_503")
            if not served:
                adm_b = await b.admit("B")
                if adm_b.allowed:
                    await b.record(adm_b, ok=True, latency=0.05)
                    served = True
            client_failures += not served
        clock.advance(dt)

    assert client_failures == 0
    trips = [e for e in events if e[2] == "A" and e[4] == "open"]
    assert trips, "A tripped"
    t_trip = trips[0][0]
    assert trips[0][3] == "closed"
    # After the trip is written, another instance can call A until its cache is refreshed:
    # at most one staleness period of its requests.
    per_instance = math.ceil(st.cache_staleness_seconds / dt) + 1
    after_trip = [r for r in reached_a if t_trip < r[0] <= t_trip + st.cache_staleness_seconds + 1e-9]
    assert len(after_trip) <= (N - 1) * per_instance
    if a_every > 1:
        for other in ("inst1", "inst2", "inst3"):
            mine = [r for r in reached_a if r[1] == other and not r[2]]
            assert 0 < len(mine) < st.consecutive_failures, "too few to trip on its own: it learned from the store"
    open_until = t_trip + 10
    during_open = [r for r in reached_a if t_trip + st.cache_staleness_seconds + 1e-9 < r[0] < open_until]
    assert during_open == []
    # the open window ends with exactly one probe across the fleet, which fails and re-opens for 20 s
    after_open = [r for r in reached_a if r[0] >= open_until]
    assert len(after_open) == 1 and after_open[0][2] is True
    reopen = [e for e in events if e[2] == "A" and e[3] == "half_open" and e[4] == "open"]
    assert len(reopen) == 1
    assert not [e for e in events if e[2] == "B"], "B never changed state"
    assert len(trips) == 2, "one trip, one re-open: no instance wrote a duplicate transition"


async def test_exactly_one_probe_across_instances_per_open_window(azurite, fleet):
    clock = Clock()
    instances, events, _ = fleet(azurite.connection_string, clock, consecutive_failures=1, open_seconds=10)
    adm = await instances[0].admit("A")
    await instances[0].record(adm, ok=False, failure_class="timeout")
    for window, (wait, outcome) in enumerate([(10, False), (20, True)]):
        clock.advance(wait)
        results = await asyncio.gather(*(b.admit("A") for b in instances for _ in range(5)))
        probes = [r for r in results if r.probe]
        assert len(probes) == 1, f"window {window}: {len(probes)} probes"
        assert all(not r.allowed for r in results if not r.probe)
        holder = next(b for b in instances if b.instance_id == probes[0].token.split("#")[0])
        # while the probe runs, no instance (with a fresh look at the store) admits A
        clock.advance(1.0)
        again = await asyncio.gather(*(b.admit("A") for b in instances))
        assert not any(r.allowed for r in again)
        await holder.record(probes[0], ok=outcome, failure_class=None if outcome else "timeout")
    clock.advance(1.0)
    final = await asyncio.gather(*(b.admit("A") for b in instances))
    assert all(r.allowed and r.state == "closed" for r in final)
    assert [(e[3], e[4]) for e in events] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("open", "half_open"), ("half_open", "closed"),
    ]


async def test_concurrent_failures_from_all_instances_are_all_counted(azurite, fleet):
    clock = Clock()
    instances, _, st = fleet(azurite.connection_string, clock, consecutive_failures=0, min_calls=100_000,
                             window_seconds=600)
    per_instance_fail, per_instance_ok = 25, 15

    async def traffic(b: Breakers) -> None:
        for i in range(per_instance_fail + per_instance_ok):
            adm = await b.admit("A")
            await b.record(adm, ok=i >= per_instance_fail, failure_class="http_500")

    await asyncio.gather(*(traffic(b) for b in instances))
    clock.advance(1.0)
    # every instance flushes at the same moment: conditional writes collide and re-apply
    await asyncio.gather(*(b.flush() for b in instances))
    await asyncio.gather(*(b.flush() for b in instances))
    got = await instances[0]._store.get("A")
    assert got is not None
    calls, failures = got[0].window_counts(st, clock())
    assert (calls, failures) == (N * (per_instance_fail + per_instance_ok), N * per_instance_fail)
    rows = await instances[1].status()
    assert rows[0]["calls"] == calls and rows[0]["failures"] == failures


async def test_retry_after_30s_keeps_every_instance_out_for_30s(azurite, fleet):
    clock = Clock()
    instances, _, _ = fleet(azurite.connection_string, clock, open_seconds=5)
    for b in instances:
        assert (await b.admit("A")).allowed
    adm = await instances[2].admit("A")
    await instances[2].record(adm, ok=False, failure_class="http_429", retry_after=30.0)
    for dt in (1.0, 10.0, 29.0, 29.99):
        clock.t = T0 + dt
        for b in instances:
            r = await b.admit("A")
            assert not r.allowed and r.retry_after == pytest.approx(30.0 - dt, abs=1e-6)
    clock.t = T0 + 30.0
    results = await asyncio.gather(*(b.admit("A") for b in instances))
    assert sum(r.probe for r in results) == 1


async def test_store_outage_is_survived_and_state_reconciles(azurite_private, fleet, caplog):
    clock = Clock()
    instances, events, _ = fleet(azurite_private.connection_string, clock, table="breakers", store_timeout=2.0,
                                 consecutive_failures=5, open_seconds=30)
    for b in instances:
        for p in ("A", "B"):
            await b.record(await b.admit(p), ok=True)
    await asyncio.gather(*(b.flush() for b in instances))

    azurite_private.stop()
    clock.advance(2.0)
    first = instances[0]
    for _ in range(8):  # A fails on instance 0 only; every call still gets an answer
        for b in instances:
            adm = await b.admit("A")
            if adm.allowed and b is first:
                await b.record(adm, ok=False, failure_class="connect_error")
            elif adm.allowed:
                await b.record(adm, ok=True)
            await b.record(await b.admit("B"), ok=True)
        clock.advance(0.3)
    rows = {r["provider"]: r for r in await first.status()}
    assert rows["A"]["degraded"] is True and rows["A"]["last_store_error"]
    assert rows["A"]["state"] == "open", "tripped on local counts while the store is down"
    assert not (await first.admit("A")).allowed
    assert (await instances[1].admit("A")).allowed, "others have not heard of it yet"
    assert any("(local; store unavailable)" in e[5] for e in events)
    degraded_logs = [r for r in caplog.records if getattr(r, "event", None) == "breaker_store_degraded"]
    assert len(degraded_logs) == N, "logged once per instance per outage"

    azurite_private.start()  # same port, empty (in-memory): the table is recreated
    clock.advance(1.0)
    await first.refresh()
    clock.advance(1.0)
    await asyncio.gather(*(b.refresh() for b in instances[1:]))
    for b in instances:
        rows = {r["provider"]: r for r in await b.status()}
        assert rows["A"]["state"] == "open" and rows["A"]["degraded"] is False, b.instance_id
        assert rows["B"]["state"] == "closed"
