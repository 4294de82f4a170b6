"""Breaker benchmark: store cost per request, admit latency, outage-to-skip time.

    .venv/bin/python bench/bench_breaker.py                 # Table store on a private Azurite
    .venv/bin/python bench/bench_breaker.py --store memory  # no Azurite needed

Simulated time (a shared fake clock) drives several `Breakers` instances, each with its
own store client, like separate Function instances; the store calls are real (Azurite).

1. Steady state: every instance sends `--rps` requests/s spread over the providers,
   all succeeding, for `--seconds` of simulated time. Store operations / requests.
2. `admit` latency with a warm cache (closed breaker, fresh view), wall clock.
3. Outage: provider A starts failing at t0. Time until it trips, and until every
   instance skips it (also instances that send A too little traffic to trip on their own).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.resilience import Breakers, BreakerSettings, MemoryBreakerStore, TableBreakerStore  # noqa: E402
from shared.storage import TableConnection  # noqa: E402

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def make_fleet(kind: str, conn: str | None, n: int, clock: Clock, st: BreakerSettings):
    table = f"bench{uuid.uuid4().hex[:12]}"
    shared_memory = MemoryBreakerStore()
    out = []
    for i in range(n):
        if kind == "memory":
            store = shared_memory
        else:
            store = TableBreakerStore.from_connection(TableConnection("bench", connection_string=conn), table)
        out.append(Breakers(store, settings_for=lambda _p: st, clock=clock, instance_id=f"i{i}", store_timeout=5.0))
    return out, (lambda: shared_memory.calls if kind == "memory" else sum(b._store.calls for b in out))


async def close(fleet, kind: str) -> None:
    for b in fleet:
        await b.close()


async def steady_state(kind, conn, n, rps, seconds, providers) -> dict:
    clock = Clock()
    st = BreakerSettings()
    fleet, calls = make_fleet(kind, conn, n, clock, st)
    names = [f"p{k}" for k in range(providers)]
    # warm up: first sight of each provider, first flush
    for b in fleet:
        for p in names:
            await b.record(await b.admit(p), ok=True)
    clock.t += 10
    for b in fleet:
        await b.flush()
    base = calls()
    dt = 1.0 / rps
    requests = 0
    for step in range(int(seconds * rps)):
        p = names[step % providers]
        for b in fleet:
            adm = await b.admit(p)
            await b.record(adm, ok=True, latency=0.1)
            requests += 1
        await asyncio.sleep(0)  # a server yields on every request's I/O; lets background flushes run
        clock.t += dt
    await asyncio.gather(*[t for b in fleet for t in list(b._tasks)])
    ops = calls() - base
    await close(fleet, kind)
    return {"requests": requests, "store_ops": ops, "ops_per_request": ops / requests,
            "ops_per_instance_second": ops / n / seconds}


async def admit_latency(iterations: int = 200_000) -> dict:
    clock = Clock()
    st = BreakerSettings()
    b = Breakers(MemoryBreakerStore(), settings_for=lambda _p: st, clock=clock, instance_id="lat")
    await b.admit("p")  # warm: first read
    admit = b.admit
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(iterations // 20):
            await admit("p")
        samples.append((time.perf_counter() - start) / (iterations // 20))
    singles = []
    pc = time.perf_counter_ns
    for _ in range(20_000):
        s = pc()
        await admit("p")
        singles.append(pc() - s)
    singles.sort()
    await b.close()
    return {
        "mean_us": statistics.mean(samples) * 1e6,
        "p50_us": singles[len(singles) // 2] / 1000,
        "p99_us": singles[int(len(singles) * 0.99)] / 1000,
    }


async def outage(kind, conn, n, staleness, a_every: int) -> dict:
    """A fails from t0. Each instance serves 100 req/s; instance 0 sends all of them to A,
    the others send one in `a_every` to A and the rest to a healthy B. Measures when each
    instance's breaker for A stops admitting (its view of A leaves "closed")."""
    clock = Clock()
    st = BreakerSettings.from_dict({"cache_staleness_seconds": staleness})
    fleet, _ = make_fleet(kind, conn, n, clock, st)
    for b in fleet:
        for p in ("A", "B"):
            await b.record(await b.admit(p), ok=True)
    clock.t += 10
    t0 = clock.t
    skipping: dict[str, float] = {}
    trip_at = None
    dt = 0.01
    for step in range(int(30 / dt)):
        for i, b in enumerate(fleet):
            p = "A" if i == 0 or step % a_every == 0 else "B"
            adm = await b.admit(p)
            if adm.allowed:
                await b.record(adm, ok=(p == "B"), failure_class=None if p == "B" else "http_503")
            if b._entries["A"].view.state != "closed":
                skipping.setdefault(b.instance_id, clock.t)
        if trip_at is None:
            got = await fleet[0]._store.get("A")
            if got is not None and got[0].state == "open":
                trip_at = got[0].state_since
        if len(skipping) == n:
            break
        await asyncio.sleep(0)
        clock.t += dt
    await close(fleet, kind)
    everyone = max(skipping.values()) if len(skipping) == n else float("nan")
    trip = trip_at if trip_at is not None else float("nan")
    return {"trip_after_s": trip - t0, "all_skip_after_s": everyone - t0, "all_skip_after_trip_s": everyone - trip}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["table", "memory"], default="table")
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--providers", type=int, default=2)
    ap.add_argument("--rps", type=float, nargs="+", default=[100, 200, 500], help="requests/s per instance")
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    logging.getLogger("shared.resilience").setLevel(logging.ERROR)  # transitions are expected here

    az = None
    conn = None
    if args.store == "table":
        from tests.azurite import Azurite, free_port

        az = Azurite(free_port())
        az.start()
        conn = az.connection_string
    try:
        gc.collect()
        lat = await admit_latency()
        print(f"store={args.store} instances={args.instances} providers={args.providers} "
              f"simulated {args.seconds:g}s, defaults (staleness 1s, flush 1s, window 60s)")
        for rps in args.rps:
            r = await steady_state(args.store, conn, args.instances, int(rps), args.seconds, args.providers)
            print(f"steady state @ {rps:g} req/s/instance: {r['requests']} requests, {r['store_ops']} store ops, "
                  f"{r['ops_per_request']:.4f} ops/request (target < 0.01); "
                  f"{r['ops_per_instance_second']:.2f} ops/s per instance")
        print(f"admit, warm cache: mean {lat['mean_us']:.2f} us, p50 {lat['p50_us']:.2f} us, "
              f"p99 {lat['p99_us']:.2f} us (target < 20 us)")
        for a_every, label in ((1, "every instance sends all its traffic to A"),
                               (50, "instance 0 sends all to A, the others 2% to A and 98% to B")):
            o = await outage(args.store, conn, args.instances, 1.0, a_every)
            print(f"outage of A at t0, 100 req/s/instance, staleness 1s ({label}): tripped after "
                  f"{o['trip_after_s']:.2f}s; every instance skipping A after {o['all_skip_after_s']:.2f}s "
                  f"({o['all_skip_after_trip_s']:.2f}s after the trip)")
    finally:
        if az is not None:
            az.stop()


if __name__ == "__main__":
    asyncio.run(main())
