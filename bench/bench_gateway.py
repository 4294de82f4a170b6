"""Gateway benchmark: added latency and throughput over calling the provider directly.

    .venv/bin/python bench/bench_gateway.py                    # non-streamed: c=1 and c=32
    .venv/bin/python bench/bench_gateway.py --workers 2        # the same with two worker processes
    .venv/bin/python bench/bench_gateway.py --mode stream      # 200-chunk streams: TTFT and total
    .venv/bin/python bench/bench_gateway.py --quick            # shorter runs

Three kinds of process on this machine, all on 127.0.0.1: a stand-in OpenAI-compatible
provider, the gateway (`python -m devhost`, serving function_app.py with one provider, memory
breaker store and ledger, telemetry off; `--workers` sets FUNCTIONS_WORKER_PROCESS_COUNT) and
this load generator. The same client sends the same request to the provider directly and
through the gateway; "added" is the difference of the two latency distributions at the same
percentile. Everything the machine spends on the stand-ins is taken from the gateway, so they
are as cheap as they can be: non-streamed runs use the canned provider
(`bench.canned_provider`) and a keep-alive HTTP/1.1 client written as a bare asyncio protocol
(httptools parsing the responses);
streams need pacing, so they use the tests' wire-level fake (`tests.fakes.llm`) and aiohttp.
Every client runs on uvloop. Streams at concurrency 32 run twice: a burst (all 32 start
together) and steady (starts spread over one stream's duration; see `run_streams`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httptools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost.testing import start_devhost  # noqa: E402

PROMPT = "Please answer briefly: what is the capital of France, and why is it famous?"


def _start_provider(module: str, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"OpenAI (http://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return proc, m.group(1)


def start_fake(chunks: int, reply: str | None, chunk_interval: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The tests' wire-level fake (`tests.fakes.llm`): used for streams."""
    args = ["--name", "bench", "--key", "bench-key", "--chunks", str(chunks), "--seconds", "900",
            "--chunk-interval", str(chunk_interval)]
    return _start_provider("tests.fakes.llm", *args, *(["--reply", reply] if reply else []))


def start_canned() -> tuple[subprocess.Popen, str]:
    """The canned provider (`bench.canned_provider`): used for non-streamed throughput."""
    return _start_provider("bench.canned_provider", "--key", "bench-key")


class RawClient(asyncio.Protocol):
    """Keep-alive HTTP/1.1 POST with a fixed body; returns each response's status.

    A bare asyncio protocol (run on uvloop) with httptools parsing the responses: the load
    generator shares the two cores with the gateway and the fake, so it should spend as
    little CPU per request as it can.
    """

    def __init__(self, url: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        m = re.match(r"http://([^:/]+):(\d+)", url)
        self.host, self.port = m.group(1), int(m.group(2))
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.request = head.encode() + body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None

    async def connect(self) -> None:
        await asyncio.get_running_loop().create_connection(lambda: self, self.host, self.port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed response: {exc}"))
            self.transport.close()

    def on_message_complete(self) -> None:  # httptools callback: one whole response is in
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self) -> int:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(self.request)
        return await self.waiter

    def close(self) -> None:
        if self.transport:
            self.transport.close()


def run(coro):
    """Run a load on uvloop, as the gateway and the fake provider run."""
    import uvloop

    return uvloop.run(coro)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


async def run_load(url: str, path: str, body: bytes, headers: dict[str, str], concurrency: int,
                   requests: int, seconds: float) -> dict:
    clients = [RawClient(url, path, body, headers) for _ in range(concurrency)]
    for c in clients:
        await c.connect()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    per_client = max(1, requests // concurrency)

    async def worker(c: RawClient) -> None:
        nonlocal errors
        for _ in range(per_client):
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            status = await c.send()
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors += 1

    for c in clients:  # warm-up
        await c.send()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return {"n": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}


async def run_streams(url: str, path: str, payload: dict, headers: dict[str, str], concurrency: int,
                      total: int, steady: bool = False) -> dict:
    """`total` streams over `concurrency` connections, each worker running its share in turn.

    Burst (the default): every worker starts at once, so the first streams queue behind each
    other's set-up. Steady: the workers' first starts are spread evenly over one stream's
    duration (measured by the warm-up stream), so `concurrency` streams are in flight at
    different stages, as in a service under constant load.
    """
    import aiohttp

    ttfts, totals = [], []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            first = None
            async with session.post(url + path, json=payload, headers=headers) as resp:
                if resp.status != 200:
                    errors += 1
                async for line in resp.content:
                    if first is None and b'"content":"' in line and b'"content":""' not in line:
                        first = time.perf_counter()
            totals.append(time.perf_counter() - t0)
            ttfts.append((first or time.perf_counter()) - t0)

        async def worker(k: int, count: int, spread: float) -> None:
            await asyncio.sleep(spread * k / concurrency)
            for _ in range(count):
                await one()

        await one()  # warm-up
        spread = totals[0] if steady else 0.0
        ttfts.clear(), totals.clear()
        counts = [total // concurrency + (k < total % concurrency) for k in range(concurrency)]
        await asyncio.gather(*(worker(k, c, spread) for k, c in enumerate(counts)))
    return {"n": len(ttfts), "errors": errors, "ttft_p50_ms": pct(ttfts, 50) * 1000, "ttft_p99_ms": pct(ttfts, 99) * 1000,
            "total_p50_ms": pct(totals, 50) * 1000, "total_p99_ms": pct(totals, 99) * 1000}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and its worker processes so far."""
    import psutil

    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in (proc, *proc.children(recursive=True)))


def run_with_cpu(pid: int, coro) -> tuple[dict, float]:
    """`run(coro)`, and the CPU seconds process `pid` (with its workers) spent meanwhile."""
    before = process_cpu(pid)
    result = run(coro)
    return result, process_cpu(pid) - before


def stream_runs(paced: bool, quick: bool) -> list[tuple[int, int, bool, str]]:
    """(concurrency, streams, steady, label) for the stream benchmarks."""
    if quick:
        runs = [(1, 10 if paced else 30, False), (32, 32 if paced else 96, False), (32, 64 if paced else 96, True)]
    else:
        runs = [(1, 60 if paced else 100, False), (32, 64 if paced else 320, False), (32, 192 if paced else 320, True)]
    return [(c, n, steady, f"{c:>2}" + (" steady" if steady else " burst " if c > 1 else "")) for c, n, steady in runs]


def gateway_env(fake_url: str, workers: int = 1) -> dict[str, str | None]:
    cfg = {
        "providers": {"bench": {"kind": "openai", "endpoint": fake_url, "model": "bench-model",
                                "api_key_secret": "bench-key", "price": {"input_per_1k": 0.001, "output_per_1k": 0.002}}},
        "routes": {"default": {"candidates": ["bench"]}},
    }
    return {"LLM_ROUTING_CONFIG": json.dumps(cfg), "BENCH_KEY": "bench-key", "LLM_TABLE_CONNECTION": None,
            "AzureWebJobsStorage": None, "APPLICATIONINSIGHTS_CONNECTION_STRING": None,
            "FUNCTIONS_WORKER_PROCESS_COUNT": str(workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["latency", "stream"], default="latency")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chunk-interval", type=float, default=0.0,
                    help="seconds between the fake's stream chunks (0: back to back, the worst case)")
    ap.add_argument("--workers", type=int, default=1,
                    help="gateway worker processes (FUNCTIONS_WORKER_PROCESS_COUNT; default 1)")
    args = ap.parse_args()
    if args.mode == "stream":
        fake, fake_url = start_fake(200, " ".join(f"w{i}" for i in range(200)), args.chunk_interval)
    else:
        fake, fake_url = start_canned()
    gw_url, stop = start_devhost(env=gateway_env(fake_url, args.workers), extra_args=["--log-level", "warning"])
    try:
        print(f"# bench_gateway --mode {args.mode} --chunk-interval {args.chunk_interval} --workers {args.workers} "
              f"({os.cpu_count()} cores; fake, gateway and client on one machine)")
        direct_path = fake_url.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        direct = (fake_url.rsplit("/v1", 1)[0], "/" + direct_path + "/chat/completions", {"Authorization": "Bearer bench-key"})
        gateway = (gw_url, "/api/v1/chat/completions", {})
        if args.mode == "latency":
            body = json.dumps({"model": "bench-model" , "messages": [{"role": "user", "content": PROMPT}]}).encode()
            gw_body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}).encode()
            n1, n32, secs = (500, 3000, 10) if args.quick else (3000, 20000, 20)
            for conc, n in ((1, n1), (32, n32)):
                d = run(run_load(direct[0], direct[1], body, direct[2], conc, n, secs))
                g, cpu = run_with_cpu(stop.proc.pid, run_load(gateway[0], gateway[1], gw_body, gateway[2], conc, n, secs))
                cpu_ms = cpu * 1000 / max(1, g["n"] + conc)
                print(f"concurrency {conc:>2}: direct  n={d['n']:>6} p50 {d['p50_ms']:.3f} ms  p99 {d['p99_ms']:.3f} ms  {d['rps']:.0f} req/s  errors {d['errors']}")
                print(f"concurrency {conc:>2}: gateway n={g['n']:>6} p50 {g['p50_ms']:.3f} ms  p99 {g['p99_ms']:.3f} ms  {g['rps']:.0f} req/s  errors {g['errors']}")
                print(f"concurrency {conc:>2}: added   p50 {g['p50_ms'] - d['p50_ms']:.3f} ms  p99 {g['p99_ms'] - d['p99_ms']:.3f} ms"
                      f"  (gateway CPU {cpu_ms:.3f} ms per request)")
        else:
            payload = {"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
            gw_payload = {**payload, "model": "auto"}
            for conc, n, steady, label in stream_runs(args.chunk_interval > 0, args.quick):
                d = run(run_streams(direct[0], direct[1], payload, direct[2], conc, n, steady))
                g, cpu = run_with_cpu(stop.proc.pid, run_streams(gateway[0], gateway[1], gw_payload, gateway[2], conc, n, steady))
                cpu_ms = cpu * 1000 / (g["n"] + 1)  # + the warm-up stream
                for name, r in (("direct ", d), ("gateway", g)):
                    print(f"concurrency {label}: {name} n={r['n']:>4} TTFT p50 {r['ttft_p50_ms']:.2f} ms p99 {r['ttft_p99_ms']:.2f} ms"
                          f"  total p50 {r['total_p50_ms']:.2f} ms p99 {r['total_p99_ms']:.2f} ms  errors {r['errors']}")
                print(f"concurrency {label}: added   TTFT p50 {g['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} ms"
                      f"  total p50 {g['total_p50_ms'] - d['total_p50_ms']:.2f} ms  (gateway CPU {cpu_ms:.2f} ms per stream)")
    finally:
        stop()
        fake.terminate()
        fake.wait(5)


if __name__ == "__main__":
    main()
