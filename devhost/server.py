"""uvicorn for the local host: one worker, uvloop/httptools when installed, no access log."""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from devhost.app import DevHostApp, build_asgi

GRACEFUL_SHUTDOWN_S = 3.0


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def network_warning(host: str) -> str | None:
    """The warning to print when the host binds something other than loopback."""
    if is_loopback(host):
        return None
    return (f"WARNING: listening on {host}: this host is reachable from the network, and it does "
            f"not check function keys. Use --host 127.0.0.1 unless you mean it.")


def engines() -> tuple[str, str]:
    """(event loop, HTTP parser) uvicorn will pick with loop='auto' and http='auto'."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket (port 0: any free port), so the real port is known before serving.
    `reuse_port`: one of several sockets on the same port, among which the kernel spreads new
    connections (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_config(asgi: Any) -> uvicorn.Config:
    return uvicorn.Config(
        asgi,
        loop="auto",
        http="auto",
        ws="none",
        lifespan="off",  # the Functions host does not run ASGI lifespan either
        access_log=False,
        log_config=None,  # leave logging to whoever runs us
        server_header=False,
        proxy_headers=False,  # nothing here reads X-Forwarded-*; saves a middleware per request
        workers=1,
        backlog=2048,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


class _Server(uvicorn.Server):
    """uvicorn.Server that stops on SIGINT/SIGTERM without re-raising the signal afterwards,
    so the caller's clean-up (the demo's, say) still runs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def run_forever(asgi: DevHostApp, sock: socket.socket) -> None:
    """Serve on `sock` in this thread until SIGINT/SIGTERM."""
    _Server(make_config(asgi)).run(sockets=[sock])


@dataclass
class DevHostHandle:
    """A local host running in a thread of this process."""

    base_url: str
    server: uvicorn.Server
    thread: threading.Thread
    asgi: DevHostApp

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout / 2)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout / 2)
        if self.thread.is_alive():
            raise RuntimeError(f"devhost at {self.base_url} did not stop within {timeout} s")

    def __enter__(self) -> "DevHostHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: Any, port: int = 0, *, host: str = "127.0.0.1", route_prefix: str = "api",
                    start_timeout: float = 10.0) -> DevHostHandle:
    """Serve a FunctionApp (or a DevHostApp) in a daemon thread; returns once it accepts requests.

    Settings are NOT loaded: the caller's environment is the app's. Stop with `handle.stop()`
    or use the handle as a context manager.
    """
    asgi = app if isinstance(app, DevHostApp) else build_asgi(app, route_prefix)
    sock = bind_socket(host, port)
    server = uvicorn.Server(make_config(asgi))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"devhost:{sock.getsockname()[1]}", daemon=True)
    handle = DevHostHandle(base_url(sock), server, thread, asgi)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"devhost failed to start: {failure[0] if failure else 'thread exited'}")
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(f"devhost did not start within {start_timeout} s")
        time.sleep(0.005)
    return handle
