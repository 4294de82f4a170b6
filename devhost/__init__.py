"""A small local stand-in for `func start`: serves a FunctionApp's HTTP functions with uvicorn.

    python -m devhost [--port 7071] [--host 127.0.0.1] [--app function_app:app]
                      [--settings PATH | --no-settings] [--demo]

In-process:  handle = serve_in_thread(app, port=0); handle.base_url; handle.stop()
Subprocess:  base_url, stop = start_devhost(port=None, env=None, app="function_app:app")

Names are imported lazily so that `python -m devhost` can load app settings before anything
heavy (or the app) is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DevHostApp",
    "DevHostError",
    "DevHostHandle",
    "SettingsError",
    "build_asgi",
    "convert_route",
    "load_local_settings",
    "read_route_prefix",
    "serve_in_thread",
    "start_devhost",
]

_WHERE = {
    "DevHostApp": "devhost.app",
    "DevHostError": "devhost.app",
    "build_asgi": "devhost.app",
    "DevHostHandle": "devhost.server",
    "serve_in_thread": "devhost.server",
    "SettingsError": "devhost.settings",
    "load_local_settings": "devhost.settings",
    "read_route_prefix": "devhost.settings",
    "convert_route": "devhost.routes",
    "start_devhost": "devhost.testing",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'devhost' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
