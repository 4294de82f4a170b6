"""The local host's ASGI app: one route per HTTP function of an azure.functions.FunctionApp.

The host calls the function with the Starlette/FastAPI `Request` (path parameters as strings,
as the worker delivers them) and sends back whatever response it returns, streaming bodies
chunk by chunk. Everything the host itself answers (unknown path, wrong method, a function that
raised) is an OpenAI-style JSON error.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from devhost.routes import RouteTemplate, compile_matcher, convert_route

log = logging.getLogger("devhost")

HTTP_TRIGGER = "httpTrigger"
ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")

# get_functions() is not idempotent (a second call raises): remember each app's result.
_FUNCTIONS_BY_APP: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()


class DevHostError(Exception):
    """The app cannot be served as it stands (duplicate routes, bad template, ...)."""


def app_functions(app: Any) -> list[Any]:
    """`app.get_functions()`, called at most once per app object."""
    if isinstance(app, (list, tuple)):
        return list(app)
    try:
        return _FUNCTIONS_BY_APP[app]
    except (KeyError, TypeError):
        pass
    functions = list(app.get_functions())
    try:
        _FUNCTIONS_BY_APP[app] = functions
    except TypeError:
        pass
    return functions


def error_body(message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


async def _send_error(send: Callable, status: int, message: str, code: str, type_: str = "invalid_request_error",
                      headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = error_body(message, code, type_)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})


class _Context:
    """The small part of azure.functions.Context a local function may read."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = function_directory
        self.trace_context = None
        self.retry_context = None


@dataclass
class HttpFunction:
    """One served HTTP function."""

    name: str
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str
    func: Callable[..., Any]
    param: str = "req"
    wants_context: bool = False
    is_async: bool = True
    matchers: list[re.Pattern[str]] = field(default_factory=list)

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def method_list(self) -> list[str]:
        return sorted(self.methods) if self.methods is not None else list(ALL_METHODS)

    async def invoke(self, scope: dict, receive: Callable, send: Callable, path_params: dict[str, str]) -> None:
        scope["path_params"] = path_params
        request = Request(scope, receive, send)
        kwargs: dict[str, Any] = {self.param: request}
        if self.wants_context:
            kwargs["context"] = _Context(self.name, getattr(self.func, "__module__", ""))
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if self.is_async:
                result = await self.func(**kwargs)
            else:
                result = await run_in_threadpool(self.func, **kwargs)
            response = result if isinstance(result, Response) else _to_response(result)
            await response(scope, receive, tracking_send)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", self.name)
            if started:
                return  # mid-stream: the client sees the body end early, as behind the real host
            await _send_error(send, 500, f"The function '{self.name}' failed; see the host log.",
                              "internal_error", "server_error")


def _to_response(result: Any) -> Response:
    """A non-Response return value, serialised as FastAPI (the worker's web app) would."""
    from fastapi.encoders import jsonable_encoder
    from starlette.responses import JSONResponse

    return JSONResponse(jsonable_encoder(result))


def _http_trigger(function: Any) -> Any | None:
    trigger = function.get_trigger()
    return trigger if getattr(trigger, "type", None) == HTTP_TRIGGER else None


def _method_names(methods: Iterable[Any] | None) -> frozenset[str] | None:
    if not methods:
        return None
    return frozenset(str(getattr(m, "value", m)).upper() for m in methods)


def _auth_name(level: Any) -> str:
    return str(getattr(level, "value", level) or "function").lower()


def build_functions(app: Any, route_prefix: str = "api") -> tuple[list[HttpFunction], list[str]]:
    """The HTTP functions to serve, and notes about what is skipped or not enforced."""
    served: list[HttpFunction] = []
    notes: list[str] = []
    for function in app_functions(app):
        name = function.get_function_name()
        trigger = _http_trigger(function)
        if trigger is None:
            kind = getattr(function.get_trigger(), "type", "unknown")
            notes.append(f"{name}: skipped (a {kind} function; this host serves HTTP triggers only)")
            continue
        func = function.get_user_function()
        params = inspect.signature(func).parameters
        extra = [b.name for b in function.get_bindings() if b.name not in (trigger.name, "$return")]
        if extra:
            notes.append(f"{name}: skipped (bindings this host does not emulate: {', '.join(extra)})")
            continue
        if trigger.name not in params:
            raise DevHostError(f"function {name!r}: its trigger binds {trigger.name!r} but the Python "
                               f"function has no such parameter")
        template = convert_route(trigger.route or name, route_prefix)
        for item in template.unenforced:
            notes.append(f"{name}: route constraint {{{item}}} is not enforced locally")
        served.append(HttpFunction(
            name=name,
            template=template,
            methods=_method_names(trigger.methods),
            auth_level=_auth_name(getattr(trigger, "auth_level", None)),
            func=func,
            param=trigger.name,
            wants_context="context" in params and "context" != trigger.name,
            is_async=inspect.iscoroutinefunction(func),
            matchers=[compile_matcher(p) for p in template.paths],
        ))
    _check_duplicates(served)
    return served, notes


def _route_key(path: str) -> str:
    """A route shape for duplicate checks: literals in lower case, parameter names dropped."""
    return re.sub(r"\{[^{}:]*(:[^{}]*)?\}", lambda m: "{" + (m.group(1) or "") + "}", path.lower())


def _check_duplicates(functions: Sequence[HttpFunction]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for fn in functions:
        for path in fn.template.paths:
            for method in fn.method_list():
                key = (_route_key(path), method)
                if key in seen and seen[key] != fn.name:
                    raise DevHostError(
                        f"functions {seen[key]!r} and {fn.name!r} both serve {method} {path}"
                    )
                seen[key] = fn.name


def _normalise(path: str) -> str:
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path.lower()


class DevHostApp:
    """ASGI app dispatching to HTTP functions: static routes by dict, the rest by regex."""

    def __init__(self, functions: Sequence[HttpFunction], notes: Sequence[str] = (), route_prefix: str = "api") -> None:
        self.functions = list(functions)
        self.route_prefix = route_prefix.strip("/")
        self.notes = list(notes)
        self._static: dict[str, list[HttpFunction]] = {}
        self._dynamic: list[tuple[re.Pattern[str], HttpFunction]] = []
        for fn in functions:
            if fn.template.static:
                self._static.setdefault(_normalise(fn.template.paths[0]), []).append(fn)
        for fn in sorted((f for f in functions if not f.template.static), key=lambda f: f.template.precedence()):
            for matcher in fn.matchers:
                self._dynamic.append((matcher, fn))

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        path = scope["path"]
        method = scope["method"]
        allowed: set[str] = set()
        for fn in self._static.get(_normalise(path), ()):
            if fn.allows(method):
                await fn.invoke(scope, receive, send, {})
                return
            allowed.update(fn.method_list())
        for matcher, fn in self._dynamic:
            m = matcher.match(path)
            if m is None:
                continue
            if fn.allows(method):
                params = {k: v for k, v in m.groupdict().items() if v is not None}
                for key, value in fn.template.defaults.items():
                    params.setdefault(key, value)
                await fn.invoke(scope, receive, send, params)
                return
            allowed.update(fn.method_list())
        if allowed:
            await _send_error(send, 405, f"Method {method} is not allowed for {path}; allowed: "
                              f"{', '.join(sorted(allowed))}.", "method_not_allowed",
                              headers=[(b"allow", ", ".join(sorted(allowed)).encode())])
            return
        await _send_error(send, 404, f"No function serves {path}.", "not_found")


def build_asgi(app: Any, route_prefix: str = "api") -> DevHostApp:
    """The ASGI app serving a FunctionApp (or the list its get_functions() returned)."""
    functions, notes = build_functions(app, route_prefix)
    return DevHostApp(functions, notes, route_prefix)
