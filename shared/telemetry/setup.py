"""Configure export to Application Insights once, at start-up.

Settings (app settings / environment):
  APPLICATIONINSIGHTS_CONNECTION_STRING     on when set; nothing is configured otherwise
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING `Authorization=AAD` (system-assigned managed
                                            identity) or `Authorization=AAD;ClientId=<id>`
                                            (user-assigned): Entra ID ingestion
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY  when `true`, the Functions Python worker has
                                            already called the distro itself; we do not
                                            configure it a second time (duplicate exporters)

The Azure Monitor OpenTelemetry distro (`azure-monitor-opentelemetry`) is imported
only when telemetry is on: it costs about 0.65 s of imports.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
WORKER_TELEMETRY = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"

log = logging.getLogger("gateway.telemetry")

_lock = threading.Lock()
_result: bool | None = None  # None: not attempted yet


def configure_telemetry(env: Mapping[str, str]) -> bool:
    """Turn on export to Application Insights; True when telemetry is on.

    Idempotent: the first call that finds a connection string decides, later calls
    return the same answer. Never raises: a broken setting is logged (by name, never
    its value) and telemetry stays off.
    """
    global _result
    conn = (env.get(CONNECTION_STRING) or "").strip()
    if not conn:
        return bool(_result)
    with _lock:
        if _result is not None:
            return _result
        _result = _configure(conn, env)
        from shared.telemetry import events

        events.reset()
        return _result


def _configure(conn: str, env: Mapping[str, str]) -> bool:
    events_logger = logging.getLogger("gateway.events")
    if events_logger.level == logging.NOTSET:
        events_logger.setLevel(logging.INFO)
    if _truthy(env.get(WORKER_TELEMETRY)):
        log.info("telemetry: the Functions Python worker configured the Azure Monitor distro (%s=true)", WORKER_TELEMETRY)
        return True
    kwargs: dict[str, Any] = {"connection_string": conn}
    try:
        client_id = entra_client_id(env.get(AUTHENTICATION_STRING))
        if client_id is not None:
            kwargs["credential"] = _managed_identity_credential(client_id or None)
        _load_distro()(**kwargs)
    except Exception as exc:  # never let telemetry stop the app from starting
        log.error("telemetry: could not configure Application Insights (%s): %s", CONNECTION_STRING, type(exc).__name__)
        return False
    log.info("telemetry: exporting to Application Insights%s", " with Entra ID ingestion" if "credential" in kwargs else "")
    return True


def entra_client_id(auth: str | None) -> str | None:
    """Parse `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`.

    None: no Entra ID ingestion. "": system-assigned identity. Else the user-assigned
    identity's client id.
    """
    if not auth or not auth.strip():
        return None
    pairs: dict[str, str] = {}
    for part in auth.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{AUTHENTICATION_STRING}: expected key=value pairs separated by ';'")
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("authorization", "").upper() != "AAD":
        return None
    return pairs.get("clientid", "")


def _managed_identity_credential(client_id: str | None) -> Any:
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def _load_distro() -> Callable[..., None]:
    from azure.monitor.opentelemetry import configure_azure_monitor

    return configure_azure_monitor


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _reset_for_tests() -> None:
    global _result
    with _lock:
        _result = None
