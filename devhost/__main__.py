"""`python -m devhost`: serve the function app's HTTP functions locally, like `func start`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path

# Standard library only until the settings are in the environment.
from devhost import workers
from devhost.settings import SettingsError, load_local_settings, read_route_prefix

LISTENING = "devhost listening on"  # start_devhost() waits for this line

DESCRIPTION = """\
Serve the HTTP functions of an Azure Functions Python (v2 model) app locally, the way
`func start` does: each function at /<routePrefix>/<route> (routePrefix from host.json,
default 'api'), with its methods.

App settings: the 'Values' of local.settings.json are copied into the environment before the
app is imported. As with Core Tools, variables already set in the environment win over the
file. A missing file is fine; a malformed one is an error.

Function keys are not checked (Core Tools does not check them locally either)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071, help="TCP port (default 7071; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else is reachable from the "
                             "network and prints a warning)")
    parser.add_argument("--app", default="function_app:app",
                        help="module:attribute of the FunctionApp (default function_app:app)")
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--settings", metavar="PATH",
                          help="local settings file (default ./local.settings.json); existing "
                               "environment variables win over its Values")
    settings.add_argument("--no-settings", action="store_true", help="do not read any local settings file")
    parser.add_argument("--host-json", metavar="PATH", default="host.json",
                        help="host.json to read extensions.http.routePrefix from (default ./host.json)")
    parser.add_argument("--demo", action="store_true", help="start the demo (devhost.demo.start_demo()) first")
    parser.add_argument("--log-level", default="INFO", help="log level for the app and host (default INFO)")
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # a worker process (devhost.workers)
    return parser.parse_args(argv)


class DemoUnavailable(RuntimeError):
    pass


def load_demo(module: str = "devhost.demo"):
    """`start_demo` from the demo module, imported only when --demo is given."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise DemoUnavailable(f"--demo needs the module {module!r} (with start_demo()), "
                                  f"which is not there yet") from exc
        raise
    start = getattr(mod, "start_demo", None)
    if not callable(start):
        raise DemoUnavailable(f"{module} has no start_demo() function")
    return start


def import_app(spec: str):
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if attr:
        return getattr(module, attr)
    import azure.functions as func  # find the one FunctionApp, as the worker does

    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise LookupError(f"{module_name}: expected one FunctionApp, found {len(apps)}")
    return apps[0]


def setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> int:
    print(f"devhost: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker_fd is not None:
        return serve_worker(args)
    from_file = None
    if not args.no_settings:
        path = Path(args.settings) if args.settings else Path("local.settings.json")
        try:
            loaded = load_local_settings(path, required=args.settings is not None)
        except SettingsError as exc:
            return fail(str(exc))
        if loaded.path is not None:
            print(f"Loaded {len(loaded.applied)} app setting(s) from {loaded.path}"
                  + (f"; kept the environment's value for: {', '.join(loaded.skipped)}" if loaded.skipped else ""),
                  flush=True)
            from_file = loaded.path if workers.SETTING in loaded.applied else None
    try:
        route_prefix = read_route_prefix(args.host_json)
        count = workers.worker_count(os.environ, f"from {from_file}" if from_file else "from the environment")
    except (SettingsError, ValueError) as exc:
        return fail(str(exc))

    setup_logging(args.log_level)

    stop_demo = None
    if args.demo:
        try:
            start_demo = load_demo()
        except DemoUnavailable as exc:
            return fail(str(exc))
        stop_demo = start_demo()

    try:
        from devhost import server
        from devhost.app import DevHostError, build_asgi

        try:
            function_app = import_app(args.app)
        except Exception:
            traceback.print_exc()
            return fail(f"could not import the app {args.app!r} (see above)", 1)
        try:
            asgi = build_asgi(function_app, route_prefix)
        except (DevHostError, ValueError) as exc:
            return fail(str(exc))
        try:
            sock = server.bind_socket(args.host, args.port, reuse_port=count > 1)
            socks = [sock] + [server.bind_socket(args.host, sock.getsockname()[1], reuse_port=True)
                              for _ in range(count - 1)]
        except OSError as exc:
            return fail(f"cannot listen on {args.host}:{args.port}: {exc}", 1)

        url = server.base_url(sock)
        print_banner(asgi, url)
        if "azurefunctions.extensions.http.fastapi" in sys.modules and os.environ.get("PYTHON_ENABLE_INIT_INDEXING") != "1":
            print("Note: this app uses HTTP streams; in Azure it also needs the app setting "
                  "PYTHON_ENABLE_INIT_INDEXING=1 (not set here).", flush=True)
        warning = server.network_warning(args.host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        loop, http = server.engines()
        print(f"{LISTENING} {url} ({loop}, {http}, {count} worker{'s' if count > 1 else ''}; Ctrl+C to stop)",
              flush=True)
        if count == 1:
            server.run_forever(asgi, sock)
            return 0
        children = workers.start_workers(socks, ["--app", args.app, "--host-json", args.host_json,
                                                 "--log-level", args.log_level])
        for listener in socks:
            listener.close()  # the workers hold their own copies
        return workers.supervise(children, server.GRACEFUL_SHUTDOWN_S)
    finally:
        if callable(stop_demo):
            stop_demo()
        elif stop_demo is not None and callable(getattr(stop_demo, "stop", None)):
            stop_demo.stop()


def serve_worker(args: argparse.Namespace) -> int:
    """One of several worker processes: settings are already in the environment its parent
    gave it, and the parent has printed the banner."""
    from devhost import server
    from devhost.app import build_asgi

    setup_logging(args.log_level)
    workers.exit_with_parent()
    sock = workers.inherited_socket(args.worker_fd)
    asgi = build_asgi(import_app(args.app), read_route_prefix(args.host_json))
    server.run_forever(asgi, sock)
    return 0


def print_banner(asgi, url: str) -> None:
    lines = ["", "Functions:", ""]
    for fn in asgi.functions:
        methods = ",".join(fn.method_list())
        path = "/".join(p for p in (asgi.route_prefix, fn.template.template.strip("/")) if p)
        lines.append(f"        {fn.name}: [{methods}] {url}/{path}  (authLevel: {fn.auth_level})")
    lines.append("")
    for note in asgi.notes:
        lines.append(f"Note: {note}")
    lines.append("Function keys are not enforced by this local host (Core Tools does not enforce them "
                 "either). In Azure, 'function' and 'admin' routes need a key: x-functions-key header "
                 "or ?code=.")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
