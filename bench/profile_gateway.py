"""Where the gateway's CPU goes: the app served in-process, without an HTTP server or a client.

    .venv/bin/python bench/profile_gateway.py                              # non-streamed, c=32
    .venv/bin/python bench/profile_gateway.py --mode stream --chunk-interval 0.005
    .venv/bin/python bench/profile_gateway.py --profile 40                 # cProfile, top 40 by own time
    .venv/bin/python bench/profile_gateway.py --target proxy               # the bare proxy, for scale

The canned provider (`bench.canned_provider`) runs in its own process, as in
`bench_gateway.py`; the app (`function_app.py` as the local host builds it) runs in this one,
called straight through ASGI with the request already read and a `send` that drops what it is
given. So the CPU per request or stream printed here is the gateway's own Python work plus its
outbound aiohttp call, without uvicorn, the caller's socket or a load generator. With
`--profile N` it also prints cProfile's top N functions by own time (or `--sort cumulative`) (cProfile roughly doubles
the time of Python-heavy code, so read the shares, not the totals). `--target proxy` runs the
bare pass-through proxy of `bench.floor_proxy` the same way instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import PROMPT, gateway_env, run, start_canned  # noqa: E402

PATH = "/api/v1/chat/completions"


def scope_for(body: bytes) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 7071),
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}


async def call(app, body: bytes) -> int:
    """One request through the ASGI app; its status."""
    request = [{"type": "http.request", "body": body, "more_body": False}]
    done = asyncio.Event()
    status = 0

    async def receive() -> dict:
        if request:
            return request.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(body), receive, send)
    done.set()
    return status


async def load(app, body: bytes, concurrency: int, total: int, spread: float, profiler) -> tuple[float, int]:
    """`total` calls over `concurrency` workers (starts spread over `spread` s): CPU seconds, errors."""
    for _ in range(3):  # warm-up
        await call(app, body)
    errors = 0

    async def worker(k: int) -> None:
        nonlocal errors
        await asyncio.sleep(spread * k / concurrency)
        for _ in range(total // concurrency):
            if await call(app, body) != 200:
                errors += 1

    cpu = time.process_time()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    if profiler:
        profiler.disable()
    return time.process_time() - cpu, errors


async def profile(app, body: bytes, concurrency: int, total: int, spread: float, profiler) -> tuple[float, int]:
    """`load`, then an ASGI lifespan shutdown, so the app can close what it holds (the bare
    proxy's aiohttp session; the devhost app ignores lifespan scopes)."""
    try:
        return await load(app, body, concurrency, total, spread, profiler)
    finally:
        messages = [{"type": "lifespan.shutdown"}]

        async def receive() -> dict:
            return messages.pop()

        async def send(message: dict) -> None:
            pass

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["latency", "stream"], default="latency")
    ap.add_argument("--target", choices=["gateway", "proxy"], default="gateway")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=None, help="default 6400 requests, or 160 streams")
    ap.add_argument("--chunk-interval", type=float, default=0.0, help="seconds between stream chunks")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions")
    ap.add_argument("--sort", choices=["tottime", "cumulative"], default="tottime", help="order of --profile")
    args = ap.parse_args()
    stream = args.mode == "stream"
    total = args.requests or (160 if stream else 6400)
    provider, url = start_canned(200, args.chunk_interval)
    try:
        for key, value in gateway_env(url).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if args.target == "proxy":
            from bench.floor_proxy import build_app

            app = build_app(url, "bench-key")
        else:
            import function_app
            from devhost.app import build_asgi

            app = build_asgi(function_app.app)
        body = json.dumps({"model": "auto", "stream": stream,
                           "messages": [{"role": "user", "content": PROMPT}]}).encode()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        spread = 200 * args.chunk_interval if stream else 0.0  # steady streams: starts over one stream's time
        cpu, errors = run(profile(app, body, args.concurrency, total, spread, profiler))
        served = total // args.concurrency * args.concurrency
        unit = "stream" if stream else "request"
        print(f"# profile_gateway --target {args.target} --mode {args.mode} --concurrency {args.concurrency} "
              f"--chunk-interval {args.chunk_interval}: {served} {unit}s, errors {errors}")
        print(f"{args.target} CPU in-process: {cpu / served * 1e6:.1f} µs per {unit}")
        if profiler:
            import pstats

            pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)
    finally:
        provider.terminate()
        provider.wait(5)


if __name__ == "__main__":
    main()
