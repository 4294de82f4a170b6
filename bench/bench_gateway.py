"""Gateway benchmark: added latency, throughput and time to first token, beside a bare proxy.

    .venv/bin/python bench/bench_gateway.py                    # non-streamed: c=1 and c=32
    .venv/bin/python bench/bench_gateway.py --workers 2        # the same with two worker processes
    .venv/bin/python bench/bench_gateway.py --mode stream --chunk-interval 0.005  # 200-chunk streams
    .venv/bin/python bench/bench_gateway.py --mode stream --chunk-interval 0.005 --concurrency 16
    .venv/bin/python bench/bench_gateway.py --quick            # shorter runs

Four kinds of process on this machine, all on 127.0.0.1: a stand-in OpenAI-compatible
provider, the gateway (`python -m devhost`, serving function_app.py with one provider, memory
breaker store and ledger, telemetry off; `--workers` sets FUNCTIONS_WORKER_PROCESS_COUNT), the
floor (`bench.floor_proxy`: a bare uvicorn + aiohttp pass-through proxy with no gateway logic)
and this load generator. The same client sends the same request to three targets: the
provider directly, through the floor proxy and through the gateway. "Added" is a target's
latency minus the direct call's at the same percentile.

The three targets are measured in interleaved rounds (direct, proxy, gateway; then rotated),
and each figure pools its rounds. This machine's speed drifts by tens of percent over minutes;
measured one after another, two targets would differ by whatever the machine did in between,
and interleaving cancels that drift out of the comparison.

Everything the machine spends on the stand-ins is taken from the gateway, so they are as cheap
as they can be: the provider is the canned one (`bench.canned_provider`: one completion, or a
paced stream of 200 chunks), and the client a keep-alive HTTP/1.1 client written as a bare
asyncio protocol (httptools parsing the responses), both on uvloop. Streams at concurrency 32
(`--concurrency`) run steady: the 32 workers' first starts are spread over one stream's duration
and only the streams started while all 32 are in flight count (see `run_streams`).
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
from dataclasses import dataclass, field
from pathlib import Path

import httptools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost.testing import start_devhost  # noqa: E402

PROMPT = "Please answer briefly: what is the capital of France, and why is it famous?"


def _start_server(module: str, banner: str, *args: str) -> tuple[subprocess.Popen, str]:
    """Run `python -m module args` and wait for its first line, `<banner> http://...`: (process, URL)."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(rf"{banner} (http://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return proc, m.group(1)


def start_canned(chunks: int = 200, chunk_interval: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The canned provider (`bench.canned_provider`): completions, and streams of `chunks`
    content chunks `chunk_interval` seconds apart."""
    return _start_server("bench.canned_provider", "OpenAI", "--key", "bench-key", "--chunks", str(chunks),
                         "--chunk-interval", str(chunk_interval))


class RawClient(asyncio.Protocol):
    """Keep-alive HTTP/1.1 POST with a fixed body; returns each response's status.

    A bare asyncio protocol (run on uvloop) with httptools parsing the responses: the load
    generator shares the two cores with the gateway and the provider, so it should spend as
    little CPU per request as it can. With `watch_content`, it also notes when the first
    server-sent event with content arrived (`first`, a `time.perf_counter()` value).
    """

    def __init__(self, url: str, path: str, body: bytes, headers: dict[str, str], watch_content: bool = False) -> None:
        m = re.match(r"http://([^:/]+):(\d+)", url)
        self.host, self.port = m.group(1), int(m.group(2))
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.request = head.encode() + body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.watch_content = watch_content
        self.first: float | None = None
        self._partial = b""

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

    def on_body(self, body: bytes) -> None:  # httptools callback: a piece of the (de-chunked) body
        if not self.watch_content or self.first is not None:
            return
        lines = (self._partial + body).split(b"\n")
        self._partial = lines.pop()
        if any(b'"content":"' in line and b'"content":""' not in line for line in lines):
            self.first = time.perf_counter()

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
        self.first, self._partial = None, b""
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
    """`requests` POSTs over `concurrency` kept-alive connections (at most `seconds`):
    each latency in seconds, the errors (non-200 answers) and the elapsed time."""
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
    return {"n": len(latencies), "errors": errors, "elapsed": elapsed, "served": len(latencies) + concurrency,
            "latency": latencies}


async def run_streams(url: str, path: str, payload: dict, headers: dict[str, str], concurrency: int,
                      total: int, steady: bool = False) -> dict:
    """`total` streams over `concurrency` kept-alive connections, each worker running its share
    in turn, after one warm-up stream. Time to first token is the arrival of the first event
    with content.

    Steady: the workers' first starts are spread evenly over one stream's duration (the
    warm-up's), and only the streams that started while every worker was running count, so
    each counted stream began with `concurrency` streams in flight at different stages, as in
    a service under constant load.
    """
    body = json.dumps(payload).encode()
    clients = [RawClient(url, path, body, headers, watch_content=True) for _ in range(concurrency)]
    for c in clients:
        await c.connect()
    records: list[tuple[float, float, float]] = []  # (start, ttft, total)
    errors = 0

    async def one(c: RawClient) -> float:
        nonlocal errors
        t0 = time.perf_counter()
        if await c.send() != 200:
            errors += 1
        end = time.perf_counter()
        records.append((t0, (c.first or end) - t0, end - t0))
        return end - t0

    spread = await one(clients[0])  # warm-up
    records.clear()
    counts = [total // concurrency + (k < total % concurrency) for k in range(concurrency)]
    running: list[tuple[float, float]] = []

    async def worker(k: int) -> None:
        if steady:
            await asyncio.sleep(spread * k / concurrency)
        began = time.perf_counter()
        for _ in range(counts[k]):
            await one(clients[k])
        running.append((began, time.perf_counter()))

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    for c in clients:
        c.close()
    served = len(records) + 1
    if steady:
        lo, hi = max(b for b, _ in running), min(e for _, e in running)
        records = [r for r in records if lo <= r[0] <= hi] or records
    return {"n": len(records), "errors": errors, "served": served,
            "TTFT": [r[1] for r in records], "total": [r[2] for r in records]}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` and its worker processes so far."""
    import psutil

    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in (proc, *proc.children(recursive=True)))


def run_with_cpu(pid: int | None, coro) -> tuple[dict, float]:
    """`run(coro)`, and the CPU seconds process `pid` (with its workers) spent meanwhile."""
    if pid is None:
        return run(coro), 0.0
    before = process_cpu(pid)
    result = run(coro)
    return result, process_cpu(pid) - before


@dataclass
class Target:
    """Where the load goes: the provider directly, the floor proxy or the gateway."""

    name: str
    url: str
    path: str
    headers: dict[str, str]
    model: str
    pid: int | None = None  # whose CPU to count


@dataclass
class Pool:
    """One target's results pooled over the rounds."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    per_round: list[float] = field(default_factory=list)  # each round's p50 of the first metric
    n: int = 0
    served: int = 0
    errors: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0

    def add(self, result: dict, cpu: float, metrics: tuple[str, ...]) -> None:
        for m in metrics:
            self.samples.setdefault(m, []).extend(result[m])
        self.per_round.append(pct(result[metrics[0]], 50) * 1000)
        self.n += result["n"]
        self.served += result["served"]
        self.errors += result["errors"]
        self.elapsed += result.get("elapsed", 0.0)
        self.cpu += cpu

    def p(self, metric: str, q: float) -> float:
        return pct(self.samples[metric], q) * 1000


def interleaved(targets: list[Target], rounds: int, measure) -> dict[str, Pool]:
    """`measure(target)` for every target in every round, the order rotated each round."""
    pools = {t.name: Pool() for t in targets}
    for r in range(rounds):
        for t in targets[r % len(targets):] + targets[:r % len(targets)]:
            result, cpu, metrics = measure(t)
            pools[t.name].add(result, cpu, metrics)
    return pools


def report(prefix: str, pools: dict[str, Pool], metrics: tuple[str, ...], unit: str, digits: int) -> None:
    """A line per target (its first metric's p50 and p99, the others' p50; the proxy's and
    the gateway's added over direct, and CPU per `unit`), then each round's added p50."""
    d = pools["direct"]
    first = metrics[0]
    for name, pool in pools.items():
        line = (f"{prefix}: {name:<8} n={pool.n:>6} {first} p50 {pool.p(first, 50):.{digits}f} ms"
                f"  p99 {pool.p(first, 99):.{digits}f} ms")
        line += "".join(f"  {m} p50 {pool.p(m, 50):.{digits}f} ms" for m in metrics[1:])
        if pool.elapsed:
            line += f"  {pool.n / pool.elapsed:>6.0f} req/s"
        line += f"  errors {pool.errors}"
        if name != "direct":
            line += f"  added {first} p50 {pool.p(first, 50) - d.p(first, 50):.{digits}f} ms"
            line += f" p99 {pool.p(first, 99) - d.p(first, 99):.{digits}f} ms"
            line += "".join(f"  {m} p50 {pool.p(m, 50) - d.p(m, 50):.{digits}f} ms" for m in metrics[1:])
            line += f"  CPU {pool.cpu * 1000 / pool.served:.{digits}f} ms/{unit}"
        print(line)
    print_rounds(prefix, pools, f"added {first} p50")


def print_rounds(prefix: str, pools: dict[str, Pool], what: str) -> None:
    direct = pools["direct"].per_round
    for name, pool in pools.items():
        if name != "direct":
            rounds = " ".join(f"{p - d:.2f}" for p, d in zip(pool.per_round, direct))
            print(f"{prefix}: {name:<8} {what} by round: {rounds}")


def stream_runs(paced: bool, quick: bool, loaded: int = 32) -> list[tuple[int, int, bool, str]]:
    """(concurrency, streams per target per round, steady, label) for the stream benchmarks:
    concurrency 1, then `loaded` concurrent streams, steady."""
    per_stream = (2 if paced else 3) if quick else (4 if paced else 10)
    runs = [(1, (5 if paced else 15) if quick else (15 if paced else 25), False), (loaded, per_stream * loaded, True)]
    return [(c, n, steady, f"{c:>2}" + (" steady" if steady else "")) for c, n, steady in runs]


def gateway_env(fake_url: str, workers: int = 1) -> dict[str, str | None]:
    cfg = {
        "providers": {"bench": {"kind": "openai", "endpoint": fake_url, "model": "bench-model",
                                "api_key_secret": "bench-key", "price": {"input_per_1k": 0.001, "output_per_1k": 0.002}}},
        "routes": {"default": {"candidates": ["bench"]}},
    }
    return {"LLM_ROUTING_CONFIG": json.dumps(cfg), "BENCH_KEY": "bench-key", "LLM_TABLE_CONNECTION": None,
            "AzureWebJobsStorage": None, "APPLICATIONINSIGHTS_CONNECTION_STRING": None,
            "FUNCTIONS_WORKER_PROCESS_COUNT": str(workers)}


def start_floor(fake_url: str, key: str = "bench-key") -> tuple[subprocess.Popen, str]:
    """The floor: a bare pass-through proxy to the provider (`bench.floor_proxy`)."""
    return _start_server("bench.floor_proxy", "Proxy", "--upstream", fake_url, "--key", key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["latency", "stream"], default="latency")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chunk-interval", type=float, default=0.0,
                    help="seconds between the fake's stream chunks (0: back to back, the worst case)")
    ap.add_argument("--workers", type=int, default=1,
                    help="gateway worker processes (FUNCTIONS_WORKER_PROCESS_COUNT; default 1)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 4; 2 with --quick)")
    ap.add_argument("--concurrency", type=int, default=32,
                    help="streams in flight in the loaded stream run (default 32; the Bicep lets one instance "
                         "take 16)")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 4)
    fake, fake_url = start_canned(200, args.chunk_interval)
    floor, floor_url = start_floor(fake_url)
    gw_url, stop = start_devhost(env=gateway_env(fake_url, args.workers), extra_args=["--log-level", "warning"])
    try:
        loaded = f"--concurrency {args.concurrency} " if args.mode == "stream" and args.concurrency != 32 else ""
        print(f"# bench_gateway --mode {args.mode} --chunk-interval {args.chunk_interval} --workers {args.workers} "
              f"--rounds {rounds} {loaded}({os.cpu_count()} cores; provider, proxy, gateway and client on one machine)")
        direct_path = fake_url.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        targets = [
            Target("direct", fake_url.rsplit("/v1", 1)[0], "/" + direct_path + "/chat/completions",
                   {"Authorization": "Bearer bench-key"}, "bench-model"),
            Target("proxy", floor_url, "/v1/chat/completions", {}, "bench-model", floor.pid),
            Target("gateway", gw_url, "/api/v1/chat/completions", {}, "auto", stop.proc.pid),
        ]
        if args.mode == "latency":
            bodies = {m: json.dumps({"model": m, "messages": [{"role": "user", "content": PROMPT}]}).encode()
                      for m in ("bench-model", "auto")}
            n1, n32 = (500, 3000) if args.quick else (3000, 20000)
            for conc, n in ((1, n1), (32, n32)):
                def measure(t: Target, conc=conc, n=n):
                    load = run_load(t.url, t.path, bodies[t.model], t.headers, conc, n // rounds, 20)
                    return (*run_with_cpu(t.pid, load), ("latency",))
                report(f"concurrency {conc:>2}", interleaved(targets, rounds, measure), ("latency",), "request", 3)
        else:
            for conc, n, steady, label in stream_runs(args.chunk_interval > 0, args.quick, args.concurrency):
                def measure(t: Target, conc=conc, n=n, steady=steady):
                    payload = {"model": t.model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
                    return (*run_with_cpu(t.pid, run_streams(t.url, t.path, payload, t.headers, conc, n, steady)),
                            ("TTFT", "total"))
                report(f"concurrency {label}", interleaved(targets, rounds, measure), ("TTFT", "total"), "stream", 2)
    finally:
        stop()
        for proc in (floor, fake):
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
