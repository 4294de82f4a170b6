"""Load test: the local host (devhost subprocess serving function_app.py) under sustained load.

    .venv/bin/python bench/load_test.py --seconds 60 --concurrency 64

What it does, all on 127.0.0.1 and bounded in time and count:
1. Starts two fake providers (tests/fakes/llm.py) with realistic latency: 20-80 ms to the
   response headers, streams of 8 content chunks 10 ms apart. `primary` is cheaper, so the
   cost strategy sends it everything; `backup` (an Azure OpenAI-style endpoint) is the spare.
2. Baseline: `--direct-seconds` of the same request mix sent straight to the primary fake.
3. Starts the devhost with function_app.py (plus one anonymous bench-only debug route, see
   `app` below) and drives it at `--concurrency` for `--seconds`: `--stream-ratio` of the
   requests streamed, the rest not. At `--outage-at` of the run the primary starts answering
   every request with 503 (a persistent fault); at `--recover-at` it heals.
4. Samples the devhost process (RSS, open files, threads, TCP connections) every second,
   polls the breaker state every 100 ms, and at the end counts the devhost's TCP connections,
   the fakes' server-side connections and the devhost's asyncio tasks (before and after).

Prints: requests and errors (any non-200, error event, missing [DONE], timeout), latency
percentiles and the latency the gateway adds (client latency minus the fake's own service time
of the same request, compared with the same figure for direct calls), failovers, how fast the
breaker opened, memory trend (slope, first vs last third) and leak counts. `--json PATH`
writes the same figures as JSON. Exit status 1 when a check fails (errors, memory growth,
leaked connections or tasks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TAG = re.compile(rb"load-(\d+)-")
PROMPTS = [
    "Summarise the plot of a heist film in two sentences.",
    "What is the capital of Australia and why was it chosen?",
    "Translate 'good morning, how are you' into French.",
    "Write a haiku about autumn rain.",
    "Explain what a circuit breaker is in software, briefly.",
    "List three uses of a paperclip.",
    "Classify the sentiment of: the food was cold but the staff were lovely.",
    "Extract the dates from: we met on 3 March 2021 and again on 5 May 2022.",
]


# -- the devhost app with a bench-only debug route ------------------------------------------------


def __getattr__(name: str) -> Any:
    """`python -m devhost --app bench.load_test:app` serves function_app.py plus `GET /api/bench/debug`
    (anonymous): asyncio task count and the gateway's pooled provider connections. Built only when
    the devhost asks for it; running this file as a script never touches it. Never deployed."""
    if name != "app":
        raise AttributeError(name)
    import gc

    import azure.functions as func
    from azurefunctions.extensions.http.fastapi import JSONResponse, Request

    from function_app import app

    @app.route(route="bench/debug", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    async def bench_debug(req: Request) -> JSONResponse:
        import shared.gateway as g

        gc.collect()
        # A usage-ledger write under way is work in progress, not a leak: counted apart.
        tasks = [t for t in asyncio.all_tasks() if not t.done() and t.get_name() != "usage-ledger-write"]
        names: dict[str, int] = {}
        for t in tasks:
            key = re.sub(r"\d+", "N", t.get_name())
            names[key] = names.get(key, 0) + 1
        gw = g._gateway
        ledger = getattr(gw, "ledger", None)
        return JSONResponse({
            "tasks": len(tasks), "task_names": names,
            "pooled_provider_connections": gw.http.open_connections() if gw is not None else None,
            "ledger": type(ledger).__name__,
            "ledger_records_in_memory": len(getattr(ledger, "_records", ())) or getattr(ledger, "pending", 0),
            "ledger_written": getattr(ledger, "written", None), "ledger_dropped": getattr(ledger, "dropped", None),
            "gc_objects": len(gc.get_objects()),
            "gc_types": _type_counts(gc.get_objects()),
        })

    globals()["app"] = app
    return app


def _type_counts(objects) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in objects:
        t = type(o)
        key = f"{t.__module__}.{t.__qualname__}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _type_growth(start: dict[str, int], end: dict[str, int], top: int = 8) -> dict[str, int]:
    diff = {k: end.get(k, 0) - start.get(k, 0) for k in set(start) | set(end)}
    return dict(sorted(((k, v) for k, v in diff.items() if v > 0), key=lambda kv: -kv[1])[:top])


# -- fakes with jittered latency --------------------------------------------------------------------


def make_fake(name: str, key: str, seed: int, lat: tuple[float, float], chunks: int, interval: float):
    from collections import deque

    from tests.fakes.llm import FakeLLM

    class JitteryFake(FakeLLM):
        """A FakeLLM whose header latency is uniform in `lat`; it records, per request tag, its
        own service time (request read to last byte written) and keeps only recent call records."""

        def __init__(self) -> None:
            self._rng = random.Random(seed)
            self.service: dict[int, float] = {}
            super().__init__(name, api_key=key, chunks=chunks, chunk_interval=interval)

        @property
        def latency(self) -> float:  # type: ignore[override]
            return self._rng.uniform(*lat)

        @latency.setter
        def latency(self, value: float) -> None:
            pass

        def reset_records(self) -> None:
            super().reset_records()
            self.calls = deque(maxlen=64)  # type: ignore[assignment]

        async def _chat(self, request, protocol):
            raw = await request.read()  # cached: the fake reads it again
            t0 = time.monotonic()
            m = TAG.search(raw)
            try:
                return await super()._chat(request, protocol)
            finally:
                if m:
                    self.service[int(m.group(1))] = time.monotonic() - t0

        def server_connections(self) -> int:
            server = getattr(self._runner, "server", None)
            return len(getattr(server, "connections", ()) or ())

    return JitteryFake()


# -- the client ---------------------------------------------------------------------------------------


@dataclass
class Result:
    tag: int
    t0: float
    latency: float
    stream: bool
    ok: bool
    status: int
    error: str = ""
    ttft: float | None = None
    attempts: str = ""
    provider: str = ""


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)
    counter: int = 0


def body_for(tag: int, stream: bool, rng: random.Random) -> dict[str, Any]:
    text = f"load-{tag}- {rng.choice(PROMPTS)}"
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 64}
    if stream:
        body["stream"] = True
    return body


async def one(session, url: str, tag: int, stream: bool, rng: random.Random, timeout: float,
              direct_model: str | None = None, headers: dict[str, str] | None = None) -> Result:
    import aiohttp

    body = body_for(tag, stream, rng)
    if direct_model:
        body["model"] = direct_model
    t0 = time.monotonic()
    ttft = None
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, json=body, headers=headers) as resp:
                attempts = resp.headers.get("X-LLM-Attempts", "")
                provider = resp.headers.get("X-LLM-Provider", "")
                if resp.status != 200:
                    text = await resp.text()
                    return Result(tag, t0, time.monotonic() - t0, stream, False, resp.status, text[:200],
                                  attempts=attempts, provider=provider)
                if not stream:
                    data = await resp.json()
                    ok = bool(data.get("choices"))
                    return Result(tag, t0, time.monotonic() - t0, stream, ok, 200, "" if ok else "no choices",
                                  attempts=attempts, provider=provider)
                done = False
                error = ""
                async for line in resp.content:
                    if not line.startswith(b"data: "):
                        continue
                    if line.startswith(b"data: [DONE]"):
                        done = True
                        continue
                    if ttft is None and b'"content"' in line:
                        ttft = time.monotonic() - t0
                    if b'"error"' in line and "error" in json.loads(line[6:]):
                        error = line[6:200].decode(errors="replace")
                ok = done and not error
                return Result(tag, t0, time.monotonic() - t0, stream, ok, 200,
                              error or ("" if done else "no [DONE]"), ttft, attempts, provider)
    except TimeoutError:
        return Result(tag, t0, time.monotonic() - t0, stream, False, 0, "client timeout")
    except aiohttp.ClientError as exc:
        return Result(tag, t0, time.monotonic() - t0, stream, False, 0, f"{type(exc).__name__}: {exc}"[:200])


async def drive(url: str, seconds: float, concurrency: int, ratio: float, max_requests: int, timeout: float,
                seed: int, run: Run, direct_model: str | None = None, on_tick=None,
                headers: dict[str, str] | None = None) -> None:
    import aiohttp

    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.monotonic() < deadline and run.counter < max_requests:
                run.counter += 1
                tag = run.counter
                run.results.append(await one(session, url, tag, rng.random() < ratio, rng, timeout, direct_model,
                                           headers))

        ticker = asyncio.create_task(on_tick()) if on_tick else None
        try:
            await asyncio.gather(*(worker(i) for i in range(concurrency)))
        finally:
            if ticker:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    pass


# -- statistics ---------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.1f} ms"


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t seconds, value) in value per minute."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 60 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den


def overheads(results: list[Result], service: dict[int, float], stream: bool) -> list[float]:
    """Client latency minus the fake's own service time, for requests served by one attempt."""
    out = []
    for r in results:
        if r.ok and r.stream == stream and r.tag in service and "," not in r.attempts:
            out.append(r.latency - service[r.tag])
    return out


# -- the process under test ---------------------------------------------------------------------------


def tcp_summary(proc, listen_port: int, fake_ports: set[int]) -> dict[str, Any]:
    inbound: dict[str, int] = {}
    outbound: dict[str, int] = {}
    other = 0
    for c in proc.net_connections(kind="tcp"):
        if c.status == "LISTEN":
            continue
        if c.laddr and c.laddr.port == listen_port:
            inbound[c.status] = inbound.get(c.status, 0) + 1
        elif c.raddr and c.raddr.port in fake_ports:
            outbound[c.status] = outbound.get(c.status, 0) + 1
        else:
            other += 1
    return {"inbound": inbound, "to_providers": outbound, "other": other}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--stream-ratio", type=float, default=0.5, help="share of streamed requests (default 0.5)")
    p.add_argument("--direct-seconds", type=float, default=8.0, help="baseline straight to the fake (default 8)")
    p.add_argument("--outage-at", type=float, default=0.4, help="fraction of the run when the primary fails (0: never)")
    p.add_argument("--recover-at", type=float, default=0.6, help="fraction of the run when it heals (0: never)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from latency and memory figures")
    p.add_argument("--max-requests", type=int, default=2_000_000, help="hard cap on requests sent")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request client timeout")
    p.add_argument("--settle", type=float, default=32.0,
                   help="seconds to wait after the load before the final leak count (aiohttp drops idle pooled "
                        "connections after 15-30 s)")
    p.add_argument("--store", choices=("azurite", "memory"), default=None,
                   help="breaker store and usage ledger: a private Azurite, as in Azure (default when "
                        "node_modules has it), or in memory (the ledger then keeps up to 100,000 records)")
    p.add_argument("--log-level", default="WARNING", help="devhost log level (default WARNING)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    return asyncio.run(run_all(args))


async def run_all(args) -> int:
    from tests.azurite import BINARY, Azurite, free_port

    store = args.store or ("azurite" if BINARY.exists() else "memory")
    azurite = Azurite(free_port()) if store == "azurite" else None
    if azurite is not None:
        azurite.start()
    try:
        return await _run_all(args, store, azurite)
    finally:
        if azurite is not None:
            azurite.stop()


async def _run_all(args, store: str, azurite) -> int:
    import aiohttp
    import psutil

    from devhost.testing import start_devhost
    from tests.fakes.llm import FakeLLMThread, Fault
    from tests.gateway_helpers import azure_provider, openai_provider

    primary = make_fake("primary", "k-primary", 1, (0.02, 0.08), 8, 0.01)
    backup = make_fake("backup", "k-backup", 2, (0.02, 0.08), 8, 0.01)
    report: dict[str, Any] = {"command": "bench/load_test.py " + " ".join(sys.argv[1:]),
                              "concurrency": args.concurrency, "seconds": args.seconds,
                              "stream_ratio": args.stream_ratio, "cpus": os.cpu_count(), "store": store,
                              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    failures: list[str] = []
    fake_thread = FakeLLMThread(primary, backup)
    with fake_thread:
        # 1. direct baseline
        direct = Run()
        await drive(f"{primary.openai_base_url}/chat/completions", args.direct_seconds, args.concurrency,
                    args.stream_ratio, args.max_requests, args.timeout, args.seed, direct, direct_model="fake-model",
                    headers={"Authorization": "Bearer k-primary"})
        d_ok = [r for r in direct.results if r.ok]
        report["direct"] = {
            "requests": len(direct.results), "errors": len(direct.results) - len(d_ok),
            "rps": round(len(direct.results) / args.direct_seconds, 1),
            "p50_ms": {k: round(pct([r.latency for r in d_ok if r.stream == s], 50) * 1000, 1) for k, s in (("json", False), ("stream", True))},
            "p99_ms": {k: round(pct([r.latency for r in d_ok if r.stream == s], 99) * 1000, 1) for k, s in (("json", False), ("stream", True))},
        }
        direct_over = {s: overheads(direct.results, primary.service, s) for s in (False, True)}
        primary.service.clear()

        # 2. the devhost
        doc = {
            "providers": {
                "primary": openai_provider(primary, "p-mini", price=(0.00015, 0.0006)),
                "backup": azure_provider(backup, "gpt-4o", price=(0.0025, 0.01)),
            },
            "routes": {"default": {"candidates": ["primary", "backup"], "strategy": "cost"}},
            "breaker": {"consecutive_failures": 5, "open_seconds": 5, "max_open_seconds": 20},
        }
        env = {"LLM_ROUTING_CONFIG": json.dumps(doc), "PRIMARY_KEY": "k-primary", "BACKUP_KEY": "k-backup",
               "LLM_TABLE_CONNECTION": azurite.connection_string if azurite else None,
               "AzureWebJobsStorage": None, "LLM_KEYVAULT_URL": None,
               "APPLICATIONINSIGHTS_CONNECTION_STRING": None}
        base, stop = start_devhost(env=env, app="bench.load_test:app",
                                   extra_args=["--log-level", args.log_level], timeout=60)
        proc = psutil.Process(stop.proc.pid)
        me = psutil.Process()
        proc.cpu_percent(), me.cpu_percent()
        port = int(base.rsplit(":", 1)[1])
        fake_ports = {primary.port, backup.port}
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{base}/api/bench/debug") as r:
                    debug_start = await r.json()
            run = Run()
            samples: list[dict[str, float]] = []
            breaker_log: list[tuple[float, str]] = []
            t_start = time.monotonic()
            events: dict[str, float] = {}

            async def tick() -> None:
                async with aiohttp.ClientSession() as s:
                    next_sample = 0.0
                    while True:
                        now = time.monotonic() - t_start
                        if args.outage_at and "outage" not in events and now >= args.outage_at * args.seconds:
                            primary.set_fault(Fault.error(503))
                            events["outage"] = now
                        if args.recover_at and "outage" in events and "recover" not in events \
                                and now >= args.recover_at * args.seconds:
                            primary.clear_faults()
                            events["recover"] = now
                        if now >= next_sample:
                            next_sample += 1.0
                            samples.append({"t": now, "rss_mb": proc.memory_info().rss / 2**20,
                                            "fds": proc.num_fds(), "threads": proc.num_threads(),
                                            "cpu": proc.cpu_percent(), "bench_cpu": me.cpu_percent(),
                                            "tcp": len(proc.net_connections(kind="tcp"))})
                        try:
                            async with s.get(f"{base}/api/routing/breakers") as r:
                                states = {b["provider"]: b["state"] for b in (await r.json())["breakers"]}
                            state = states.get("primary", "closed")
                            if not breaker_log or breaker_log[-1][1] != state:
                                breaker_log.append((time.monotonic() - t_start, state))
                        except (aiohttp.ClientError, ValueError, KeyError):
                            pass
                        await asyncio.sleep(0.1)

            await drive(f"{base}/api/v1/chat/completions", args.seconds, args.concurrency, args.stream_ratio,
                        args.max_requests, args.timeout, args.seed + 1, run, on_tick=tick)
            elapsed = time.monotonic() - t_start
            at_end = tcp_summary(proc, port, fake_ports)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{base}/api/bench/debug") as r:
                    debug_load_end = await r.json()
            await asyncio.sleep(2.0)
            after_close = tcp_summary(proc, port, fake_ports)
            await asyncio.sleep(max(0.0, args.settle - 2.0))
            settled = tcp_summary(proc, port, fake_ports)
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{base}/api/bench/debug") as r:
                    debug_end = await r.json()
            fake_conns = {f.name: await asyncio.to_thread(fake_thread.run, _count(f)) for f in (primary, backup)}
            rss_end = proc.memory_info().rss / 2**20
        finally:
            stop()
        devhost_log = stop.output()

    # 3. figures
    res = run.results
    errors = [r for r in res if not r.ok]
    measured = [r for r in res if r.t0 - t_start >= args.warmup]
    ok = [r for r in measured if r.ok]
    gw_over = {s: overheads(measured, primary.service, s) for s in (False, True)}
    report["gateway"] = {
        "requests": len(res), "errors": len(errors), "elapsed_s": round(elapsed, 1),
        "rps": round(len(res) / elapsed, 1),
        "streamed": sum(r.stream for r in res), "non_streamed": sum(not r.stream for r in res),
        "error_samples": sorted({f"{r.status} {r.error}" for r in errors})[:5],
        "p50_ms": {k: round(pct([r.latency for r in ok if r.stream == s], 50) * 1000, 1) for k, s in (("json", False), ("stream", True))},
        "p99_ms": {k: round(pct([r.latency for r in ok if r.stream == s], 99) * 1000, 1) for k, s in (("json", False), ("stream", True))},
        "ttft_p50_ms": round(pct([r.ttft for r in ok if r.stream and r.ttft], 50) * 1000, 1),
        "ttft_p99_ms": round(pct([r.ttft for r in ok if r.stream and r.ttft], 99) * 1000, 1),
    }
    added = {}
    for key, s in (("json", False), ("stream", True)):
        g, d = gw_over[s], direct_over[s]
        added[key] = {
            "overhead_direct_p50_ms": round(pct(d, 50) * 1000, 1), "overhead_direct_p99_ms": round(pct(d, 99) * 1000, 1),
            "overhead_gateway_p50_ms": round(pct(g, 50) * 1000, 1), "overhead_gateway_p99_ms": round(pct(g, 99) * 1000, 1),
            "added_p50_ms": round((pct(g, 50) - pct(d, 50)) * 1000, 1),
            "added_p99_ms": round((pct(g, 99) - pct(d, 99)) * 1000, 1),
            "samples": len(g),
        }
    report["added_latency"] = added

    outage: dict[str, Any] = {"fault": "primary answers every request with HTTP 503 (persistent)"}
    if "outage" in events:
        t_out = events["outage"]
        t_rec = events.get("recover", float("inf"))
        during = [r for r in res if t_out <= r.t0 - t_start < t_rec]
        failovers = [r for r in res if "primary:failed" in r.attempts]
        skipped = [r for r in during if "primary:skipped" in r.attempts]
        opened = next((t for t, st in breaker_log if t >= t_out and st == "open"), None)
        first_skip = min((r.t0 - t_start for r in skipped), default=None)
        outage.update({
            "started_at_s": round(t_out, 1), "healed_at_s": round(events["recover"], 1) if "recover" in events else None,
            "requests_during": len(during), "client_errors_during": sum(not r.ok for r in during),
            "failovers": len(failovers),
            "failovers_before_breaker_opened": sum(1 for r in failovers if opened is None or r.t0 - t_start < opened),
            "requests_skipping_primary": len(skipped),
            "breaker_open_after_s": round(opened - t_out, 3) if opened is not None else None,
            "first_skip_after_s": round(first_skip - t_out, 3) if first_skip is not None else None,
            "breaker_states": [(round(t, 2), st) for t, st in breaker_log],
            "p99_ms_during": round(pct([r.latency for r in during if r.ok], 99) * 1000, 1),
        })
        if "recover" in events:
            back = min((r.t0 - t_start for r in res if r.t0 - t_start >= t_rec and r.provider == "primary"), default=None)
            outage["primary_serving_again_after_s"] = round(back - t_rec, 2) if back is not None else None
    report["outage"] = outage

    mem = [(s["t"], s["rss_mb"]) for s in samples if s["t"] >= args.warmup]
    third = max(1, len(mem) // 3)
    first, last = [v for _, v in mem[:third]], [v for _, v in mem[-third:]]
    report["memory"] = {
        "samples": len(mem), "rss_start_mb": round(mem[0][1], 1) if mem else None, "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(max(v for _, v in mem), 1) if mem else None,
        "slope_mb_per_min": round(slope_per_minute(mem), 2),
        "first_third_mean_mb": round(statistics.fmean(first), 1) if first else None,
        "last_third_mean_mb": round(statistics.fmean(last), 1) if last else None,
        "fds_first_last": [samples[0]["fds"], samples[-1]["fds"]] if samples else None,
        "threads_first_last": [samples[0]["threads"], samples[-1]["threads"]] if samples else None,
        "devhost_cpu_percent_mean": round(statistics.fmean(s["cpu"] for s in samples[1:]), 1) if len(samples) > 1 else None,
        "bench_cpu_percent_mean": round(statistics.fmean(s["bench_cpu"] for s in samples[1:]), 1) if len(samples) > 1 else None,
        "ledger": debug_end["ledger"],
        "ledger_backlog_at_load_end": debug_load_end["ledger_records_in_memory"],
        "ledger_records_in_memory_end": debug_end["ledger_records_in_memory"],
        "ledger_written_dropped": [debug_end["ledger_written"], debug_end["ledger_dropped"]],
        "gc_objects_start_end": [debug_start["gc_objects"], debug_end["gc_objects"]],
        "gc_growth_by_type": _type_growth(debug_start["gc_types"], debug_end["gc_types"]),
    }
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["leaks"] = {
        "tcp_at_end": at_end, "tcp_2s_after": after_close, f"tcp_{args.settle:g}s_after": settled,
        "fake_server_connections_after": fake_conns,
        "devhost_tasks_start": debug_start["tasks"], "devhost_tasks_end": debug_end["tasks"],
        "devhost_task_names_end": debug_end["task_names"],
        "pooled_provider_connections_end": debug_end["pooled_provider_connections"],
    }
    report["devhost_log_errors"] = [l for l in devhost_log.splitlines() if " ERROR " in l or "Traceback" in l][:5]
    warnings: dict[str, int] = {}
    for line in devhost_log.splitlines():
        if " WARNING " in line and "gateway.events" not in line:
            key = re.sub(r"\d+", "N", line.split(" WARNING ", 1)[1])[:160]
            warnings[key] = warnings.get(key, 0) + 1
    report["devhost_log_warnings"] = warnings

    # 4. checks
    if errors:
        failures.append(f"{len(errors)} client errors")
    m = report["memory"]
    if m["first_third_mean_mb"] and m["last_third_mean_mb"] - m["first_third_mean_mb"] > max(10.0, 0.1 * m["first_third_mean_mb"]):
        failures.append("memory grew between the first and last third of the run")
    ledger_types = ("shared.usage.ledger._Pending", "shared.usage.ledger.UsageRecord")
    other_growth = sum(v for k, v in _type_growth(debug_start["gc_types"], debug_end["gc_types"], top=10**6).items()
                       if k not in ledger_types)
    m["gc_growth_excluding_ledger_records"] = other_growth
    if other_growth > 5000:
        failures.append(f"{other_growth} more live objects (besides queued usage records) after the run")
    if settled["inbound"].get("ESTABLISHED", 0) or settled["inbound"].get("CLOSE_WAIT", 0):
        failures.append("client connections left open on the devhost")
    if settled["to_providers"].get("CLOSE_WAIT", 0) or settled["to_providers"].get("ESTABLISHED", 0) > 2 * args.concurrency:
        failures.append("provider connections leaked")
    if debug_end["tasks"] > debug_start["tasks"] + 2:
        failures.append(f"asyncio tasks grew from {debug_start['tasks']} to {debug_end['tasks']}")
    if report["devhost_log_errors"]:
        failures.append("errors in the devhost log")
    report["checks"] = {"passed": not failures, "failures": failures}

    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if not failures else 1


async def _count(fake) -> int:
    return fake.server_connections()


def print_report(r: dict[str, Any]) -> None:
    g, d, a, o, m, lk = r["gateway"], r["direct"], r["added_latency"], r["outage"], r["memory"], r["leaks"]
    print(f"\n== load test: {r['command']}  ({r['cpus']} CPUs, client + fakes + devhost on this machine; "
          f"breaker store and usage ledger: {r['store']}; load average {r['loadavg_start']} -> {r['loadavg_end']})")
    print(f"direct to fake : {d['requests']} requests, {d['errors']} errors, {d['rps']} req/s; "
          f"p50/p99 json {d['p50_ms']['json']}/{d['p99_ms']['json']} ms, stream {d['p50_ms']['stream']}/{d['p99_ms']['stream']} ms")
    print(f"through gateway: {g['requests']} requests ({g['non_streamed']} json, {g['streamed']} streamed) in "
          f"{g['elapsed_s']} s = {g['rps']} req/s; ERRORS {g['errors']} {g['error_samples'] or ''}")
    print(f"  latency p50/p99: json {g['p50_ms']['json']}/{g['p99_ms']['json']} ms, stream {g['p50_ms']['stream']}/"
          f"{g['p99_ms']['stream']} ms, stream TTFT {g['ttft_p50_ms']}/{g['ttft_p99_ms']} ms")
    for key in ("json", "stream"):
        x = a[key]
        print(f"  added latency ({key}): p50 {x['added_p50_ms']} ms, p99 {x['added_p99_ms']} ms "
              f"(client latency minus the fake's service time: gateway {x['overhead_gateway_p50_ms']}/"
              f"{x['overhead_gateway_p99_ms']} ms vs direct {x['overhead_direct_p50_ms']}/{x['overhead_direct_p99_ms']} ms; "
              f"{x['samples']} samples)")
    if "started_at_s" in o:
        print(f"outage at {o['started_at_s']} s ({o['fault']}), healed at {o['healed_at_s']} s: "
              f"{o['requests_during']} requests during, {o['client_errors_during']} client errors; "
              f"{o['failovers']} failovers ({o['failovers_before_breaker_opened']} before the breaker opened); "
              f"breaker open after {o['breaker_open_after_s']} s, first skip after {o['first_skip_after_s']} s; "
              f"{o['requests_skipping_primary']} requests skipped the primary; p99 during {o['p99_ms_during']} ms; "
              f"primary serving again {o.get('primary_serving_again_after_s')} s after healing")
        print(f"  breaker states (t s, state): {o['breaker_states']}")
    print(f"memory (RSS, after warm-up): start {m['rss_start_mb']} MB, peak {m['rss_peak_mb']} MB, end {m['rss_end_mb']} MB; "
          f"slope {m['slope_mb_per_min']} MB/min; first third {m['first_third_mean_mb']} MB vs last third "
          f"{m['last_third_mean_mb']} MB; fds {m['fds_first_last']}, threads {m['threads_first_last']}; "
          f"gc objects {m['gc_objects_start_end']}")
    print(f"  usage ledger ({m['ledger']}): {m['ledger_backlog_at_load_end']} records queued when the load stopped, "
          f"{m['ledger_records_in_memory_end']} after settling; written/dropped {m['ledger_written_dropped']}")
    print(f"  object growth by type: {m['gc_growth_by_type']}; excluding queued usage records: "
          f"{m.get('gc_growth_excluding_ledger_records')}")
    print(f"cpu: devhost {m['devhost_cpu_percent_mean']} % of one core, bench (client + fakes) {m['bench_cpu_percent_mean']} %")
    print(f"connections: at end {lk['tcp_at_end']}; 2 s later {lk['tcp_2s_after']}; settled "
          f"{[v for k, v in lk.items() if k.startswith('tcp_') and k.endswith('s_after') and k != 'tcp_2s_after']}; "
          f"fake-side server connections {lk['fake_server_connections_after']}; pooled provider connections "
          f"{lk['pooled_provider_connections_end']}")
    print(f"asyncio tasks in the devhost: {lk['devhost_tasks_start']} before, {lk['devhost_tasks_end']} after "
          f"{lk['devhost_task_names_end']}")
    for line, n in r["devhost_log_warnings"].items():
        print(f"devhost warning x{n}: {line}")
    for line in r["devhost_log_errors"]:
        print(f"devhost ERROR: {line}")
    c = r["checks"]
    print("CHECKS: " + ("PASSED" if c["passed"] else "FAILED: " + "; ".join(c["failures"])))


if __name__ == "__main__":
    sys.exit(main())
