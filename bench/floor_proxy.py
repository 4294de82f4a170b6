"""The floor under the gateway benchmark: a bare pass-through proxy on the gateway's own stack.

    .venv/bin/python -m bench.floor_proxy --upstream http://127.0.0.1:PORT/v1 --key KEY

A raw ASGI app (no Starlette, no routing, no validation, no breakers, no telemetry) that
forwards each request body to `{upstream}/chat/completions` with one aiohttp session and
returns the provider's bytes, served by uvicorn with uvloop and httptools, as the local host
(and the Functions worker) serves the gateway. Streams are passed through as the network
delivers them, with no parsing at all. Whatever this proxy cannot reach, the gateway cannot
either: it is the cost of one inbound HTTP request plus one outbound aiohttp call in Python.
`bench_gateway.py` measures it beside the gateway, in the same rounds.

Prints `Proxy http://127.0.0.1:PORT` once it listens.
"""

from __future__ import annotations

import argparse
import socket
import sys


def build_app(upstream: str, key: str):
    import aiohttp

    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    session: aiohttp.ClientSession | None = None

    async def app(scope, receive, send) -> None:
        nonlocal session
        if scope["type"] == "lifespan":  # (uvicorn runs it with lifespan off; profile_gateway shuts it down)
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
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
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.content_type == "text/event-stream":
                await send({"type": "http.response.start", "status": resp.status,
                            "headers": [(b"content-type", b"text/event-stream")]})
                async for data in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await resp.read()
        await send({"type": "http.response.start", "status": resp.status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the provider's OpenAI base URL (…/v1)")
    parser.add_argument("--key", required=True, help="the bearer key to send upstream")
    args = parser.parse_args(argv)

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    config = uvicorn.Config(build_app(args.upstream, args.key), log_level="warning", access_log=False,
                            loop="uvloop", http="httptools", lifespan="off")
    print(f"Proxy http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
