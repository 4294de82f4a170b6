"""Run the local host as a subprocess for a test: its own environment, its own app import.

    base_url, stop = start_devhost(env={"GATEWAY_CONFIG": "..."})
    try:
        ...  # talk to base_url
    finally:
        stop()

Standard library only. `stop` is callable and also carries `.output()` (the process's combined
stdout/stderr so far) and `.proc`, for diagnostics.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"devhost listening on (http://\S+)")


class DevHostProcess:
    """The stop handle of a devhost subprocess."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.base_url: str | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=5000)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"devhost-out:{proc.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends when the process closes its output
            self._lines.append(line)
            if self.base_url is None:
                m = _LISTENING.search(line)
                if m:
                    self.base_url = m.group(1)
                    self._listening.set()

    def output(self) -> str:
        return "".join(self._lines)

    def wait_listening(self, deadline: float) -> str:
        while not self._listening.wait(0.02):
            if self.proc.poll() is not None:
                self._reader.join(1.0)
                raise RuntimeError(f"devhost exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"devhost did not start listening in time:\n{self.output()}")
        assert self.base_url is not None
        return self.base_url

    def __call__(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `timeout` seconds). Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    stop = __call__


def _answers(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
        return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the host is serving
    except (urllib.error.URLError, OSError):
        return False


def start_devhost(
    port: int | None = None,
    env: Mapping[str, str | None] | None = None,
    app: str = "function_app:app",
    *,
    cwd: str | os.PathLike[str] | None = None,
    settings: str | os.PathLike[str] | None = None,
    ready_path: str | None = "/api/health",
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> tuple[str, DevHostProcess]:
    """Start `python -m devhost` on 127.0.0.1 and wait (at most `timeout` s) until it answers.

    port: None or 0 picks a free port (the host binds it and reports it, so there is no race).
    env: added to this process's environment; a None value removes that variable.
    settings: a local.settings.json to load; by default none is read, so a developer's own
        local.settings.json never leaks into tests.
    cwd: where the app is imported from (default: the project root).
    ready_path: polled until it gets any HTTP answer; None waits for the port only.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    child_env["PYTHONUNBUFFERED"] = "1"
    # `python -m devhost` must find this package even when the app lives elsewhere.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    cmd = [sys.executable, "-m", "devhost", "--host", "127.0.0.1", "--port", str(port or 0), "--app", app]
    cmd += ["--settings", str(settings)] if settings is not None else ["--no-settings"]
    cmd += list(extra_args)
    proc = subprocess.Popen(cmd, cwd=str(cwd or PROJECT_ROOT), env=child_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    handle = DevHostProcess(proc)
    deadline = time.monotonic() + timeout
    try:
        base_url = handle.wait_listening(deadline)
        if ready_path is not None:
            while not _answers(base_url + ready_path, timeout=2.0):
                if proc.poll() is not None:
                    raise RuntimeError(f"devhost exited with {proc.returncode}:\n{handle.output()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"devhost did not answer {ready_path} in time:\n{handle.output()}")
                time.sleep(0.05)
    except BaseException:
        handle()
        raise
    return base_url, handle
