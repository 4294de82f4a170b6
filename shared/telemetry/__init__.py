"""Telemetry: export to Application Insights, and the gateway's named events.

    configure_telemetry(env) -> bool    once at start-up (heavy imports only when on)
    events.route_decided / attempt_failed / failover / breaker_transition / request_completed

Importing this package imports neither the Azure Monitor distro nor OpenTelemetry.
"""

from __future__ import annotations

from . import events
from .setup import configure_telemetry

__all__ = ["configure_telemetry", "events"]
