"""Several worker processes serving one port, as `FUNCTIONS_WORKER_PROCESS_COUNT` gives.

The Functions host starts that many Python worker processes (default 1, at most 10), each
importing the app on its own, and spreads invocations over them: the way a Python app uses
more than one core. This host does the same with processes: the parent binds one listening
socket per worker on the same port (SO_REUSEPORT) and starts `python -m devhost --worker-fd N`
children, each inheriting its own; the kernel spreads new connections evenly over them (a
socket shared by all would hand most connections to whichever process wakes first). Each
process keeps its own in-memory state (breakers, latency, ledger), exactly as separate worker
processes do in Azure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
MAX_WORKERS = 10  # the Functions host's limit for this setting


def worker_count(env: Mapping[str, str], source: str) -> int:
    """The setting's value (default 1); ValueError naming the setting and `source` otherwise."""
    raw = env.get(SETTING, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ValueError(f"{SETTING} must be a whole number from 1 to {MAX_WORKERS} ({source}), got {raw[:40]!r}")
    return int(raw)


def start_workers(socks: Sequence[socket.socket], args: Sequence[str]) -> list[subprocess.Popen]:
    """One child per listening socket; `args` are the devhost options they share."""
    children = []
    for sock in socks:
        fd = sock.fileno()
        cmd = [sys.executable, "-m", "devhost", *args, "--no-settings", "--worker-fd", str(fd)]
        children.append(subprocess.Popen(cmd, pass_fds=(fd,), stdin=subprocess.DEVNULL))
    return children


def supervise(children: list[subprocess.Popen], grace: float) -> int:
    """Wait until SIGINT/SIGTERM or a child exits; then stop every child. 0 when stopped by a
    signal, else the exit code of the child that ended first."""
    # A plain flag: a handler that took a lock (Event.set) could deadlock with the main thread.
    stop: list[int] = []
    first_exit: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, lambda signum, _frame: stop.append(signum)) for sig in handled}
    try:
        while not stop:
            time.sleep(0.1)
            ended = [c.returncode for c in children if c.poll() is not None]
            if ended:
                first_exit.append(ended[0])
                break
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(grace + 2)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
    if first_exit:
        print(f"devhost: a worker process exited with {first_exit[0]}; stopped the others", file=sys.stderr,
              flush=True)
        return first_exit[0] or 1
    return 0


def inherited_socket(fd: int) -> socket.socket:
    """The parent's listening socket, in a worker process."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock


def exit_with_parent() -> None:
    """Have Linux send this worker SIGTERM when its parent dies, even by SIGKILL (best effort
    elsewhere), so no orphan keeps serving the port."""
    if sys.platform.startswith("linux"):
        import ctypes

        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call
            os.kill(os.getpid(), signal.SIGTERM)
