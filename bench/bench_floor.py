"""The floor under the gateway benchmark: a bare pass-through proxy on the same stack.

    .venv/bin/python bench/bench_floor.py                                      # non-streamed
    .venv/bin/python bench/bench_floor.py --mode stream --chunk-interval 0.005  # 200-chunk streams
    .venv/bin/python bench/bench_floor.py --quick                              # shorter runs

A raw ASGI app (no Starlette, no routing, no validation, no breakers, no telemetry) that
forwards the request body to the provider stand-in (the same ones as `bench_gateway.py`: the
canned provider, or the tests' fake for streams) with one aiohttp session and returns
the provider's bytes, served by uvicorn (uvloop, httptools) exactly as the local host
serves the gateway. Whatever this proxy cannot reach, the gateway cannot either: it is the
cost of one inbound HTTP request plus one outbound aiohttp call in Python on this machine,
with the fake provider and the load generator on the same cores. Streams are passed through
as the network delivers them, with no parsing at all.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import PROMPT, run, run_load, run_streams, run_with_cpu, start_canned, start_fake, stream_runs  # noqa: E402

PROXY = r'''
import os, aiohttp, uvicorn
UPSTREAM = os.environ["UPSTREAM"]
session = None
async def app(scope, receive, send):
    global session
    if scope["type"] != "http":
        return
    if session is None:
        session = aiohttp.ClientSession()
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    async with session.post(UPSTREAM, data=body, headers={"Authorization": "Bearer bench-key",
                                                        "Content-Type": "application/json"}) as r:
        if r.content_type == "text/event-stream":
            await send({"type": "http.response.start", "status": r.status,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async for data in r.content.iter_any():
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = await r.read()
    await send({"type": "http.response.start", "status": r.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning", access_log=False,
            loop="uvloop", http="httptools", lifespan="off")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["latency", "stream"], default="latency")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chunk-interval", type=float, default=0.0)
    args = ap.parse_args()
    stream = args.mode == "stream"
    if stream:
        fake, fake_url = start_fake(200, " ".join(f"w{i}" for i in range(200)), args.chunk_interval)
    else:
        fake, fake_url = start_canned()
    port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", PROXY], cwd=ROOT,
                             env={"UPSTREAM": fake_url + "/chat/completions", "PORT": str(port), "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        payload = {"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]}
        body = json.dumps(payload).encode()
        direct_path = "/" + fake_url.split("127.0.0.1:", 1)[1].split("/", 1)[1] + "/chat/completions"
        base = fake_url.rsplit("/v1", 1)[0]
        print(f"# bench_floor --mode {args.mode} --chunk-interval {args.chunk_interval}: "
              "bare uvicorn + aiohttp pass-through proxy (no gateway logic)")
        if stream:
            payload["stream"] = True
            for conc, n, steady, label in stream_runs(args.chunk_interval > 0, args.quick):
                d = run(run_streams(base, direct_path, payload, {"Authorization": "Bearer bench-key"}, conc, n, steady))
                p, cpu = run_with_cpu(proxy.pid, run_streams(f"http://127.0.0.1:{port}", "/", payload, {}, conc, n, steady))
                cpu_ms = cpu * 1000 / (p["n"] + 1)  # + the warm-up stream
                print(f"concurrency {label}: direct n={d['n']:>4} TTFT p50 {d['ttft_p50_ms']:.2f} ms")
                print(f"concurrency {label}: proxy  n={p['n']:>4} TTFT p50 {p['ttft_p50_ms']:.2f} ms p99 {p['ttft_p99_ms']:.2f} ms  errors {p['errors']}")
                print(f"concurrency {label}: added  TTFT p50 {p['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} ms"
                      f"  (proxy process CPU {cpu_ms:.2f} ms per stream)")
            return
        for conc, n in ((1, 500), (32, 3000)) if args.quick else ((1, 3000), (32, 20000)):
            d = run(run_load(base, direct_path, body, {"Authorization": "Bearer bench-key"}, conc, n, 20))
            p, cpu = run_with_cpu(proxy.pid, run_load(f"http://127.0.0.1:{port}", "/", body, {}, conc, n, 20))
            cpu_ms = cpu * 1000 / max(1, p["n"] + conc)
            print(f"concurrency {conc:>2}: direct n={d['n']:>6} p50 {d['p50_ms']:.3f} ms  {d['rps']:.0f} req/s")
            print(f"concurrency {conc:>2}: proxy  n={p['n']:>6} p50 {p['p50_ms']:.3f} ms  p99 {p['p99_ms']:.3f} ms  {p['rps']:.0f} req/s  errors {p['errors']}")
            print(f"concurrency {conc:>2}: added  p50 {p['p50_ms'] - d['p50_ms']:.3f} ms  (proxy process CPU {cpu_ms:.3f} ms per request)")
    finally:
        proxy.terminate()
        proxy.wait(5)
        fake.terminate()
        fake.wait(5)


if __name__ == "__main__":
    main()
