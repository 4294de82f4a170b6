"""The composition root: one `Gateway` per instance, built from app settings on first use.

It owns the shared aiohttp session, the secret provider, the breakers, the
usage ledger and the router. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Mapping

from shared.config import GatewayConfig, load_from_setting
from shared.errors import ConfigError
from shared.providers.registry import build_provider
from shared.providers.transport import HttpClient
from shared.routing.latency import LatencyTracker
from shared.routing.planner import Planner
from shared.routing.router import Router
from shared.routing.strategies import build_strategies
from shared.routing.tasks import TASK_TYPES
from shared.storage import table_connection

log = logging.getLogger("shared.gateway")

BREAKER_TABLE_SETTING = "LLM_BREAKER_TABLE"
USAGE_TABLE_SETTING = "LLM_USAGE_TABLE"


class Gateway:
    def __init__(self, config: GatewayConfig, env: Mapping[str, str], *, clock=time.time) -> None:
        from shared.resilience import Breakers, BreakerSettings
        from shared.secrets import SecretsSettings, build_entra_token_provider, build_secret_provider

        self.config = config
        self.env = dict(env)
        self.started_at = clock()
        self.http = HttpClient()
        secrets_settings = SecretsSettings.from_config(config.secrets, env)
        self.secrets = build_secret_provider(secrets_settings, env)
        needs_tokens = any(p.auth == "entra_id" for p in config.providers.values())
        self.tokens = build_entra_token_provider(secrets_settings) if needs_tokens else None
        self.table = table_connection(env)
        self.breakers = Breakers(
            self._breaker_store(),
            settings_for=self._breaker_settings(BreakerSettings),
            clock=clock,
            on_transition=self._on_transition,
        )
        self.ledger = self._ledger()
        self.observer = self._observer()
        self.latency = LatencyTracker()
        self.providers = {
            name: build_provider(p, self.http, self.secrets, self.tokens, max_response_bytes=config.limits.max_response_bytes)
            for name, p in config.providers.items()
        }
        self.router = Router(
            config, self.providers, self.breakers,
            Planner(config, build_strategies(self.latency)), self.latency, observer=self.observer,
        )
        self._started = False
        self._start_lock: asyncio.Lock | None = None

    # -- wiring ----------------------------------------------------------------
    def _breaker_settings(self, settings_cls):
        cache = {name: settings_cls.from_dict(dict(p.breaker)) for name, p in self.config.providers.items()}
        default = settings_cls.from_dict({})
        return lambda name: cache.get(name, default)

    def _breaker_store(self):
        from shared.resilience import MemoryBreakerStore, TableBreakerStore

        if self.table is None:
            return MemoryBreakerStore()
        return TableBreakerStore.from_connection(self.table, self.env.get(BREAKER_TABLE_SETTING) or "llmbreakers")

    def _ledger(self):
        from shared.usage.ledger import MemoryLedger, TableLedger

        if self.table is None:
            return MemoryLedger()
        return TableLedger(self.table, self.env.get(USAGE_TABLE_SETTING) or "llmusage")

    def _observer(self):
        from shared.observe import GatewayObserver

        return GatewayObserver(self.ledger)

    def _on_transition(self, provider: str, from_state: str, to_state: str, cause: str) -> None:
        from shared.telemetry import events

        events.breaker_transition(provider=provider, from_state=from_state, to_state=to_state, cause=cause)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start background work (breaker flush, ledger flush) in the running loop, once."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            await self.breakers.start()
            await self.ledger.start()
            self._started = True

    async def close(self) -> None:
        for closer in (self.breakers.close, self.ledger.close, self.secrets.close, self.http.close):
            try:
                await closer()
            except Exception:  # closing must not fail the host's shutdown
                log.exception("error while closing %s", getattr(closer, "__qualname__", closer))
        if self.tokens is not None:
            try:
                await self.tokens.close()
            except Exception:
                pass

    # -- views -------------------------------------------------------------------
    def routes_view(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "config_source": cfg.source,
            "default_strategy": cfg.default_strategy,
            "routes": {
                name: {"candidates": list(r.candidates), "strategy": r.strategy or cfg.default_strategy,
                       **({"description": r.description} if r.description else {})}
                for name, r in cfg.routes.items()
            },
            "task_routes": {t: cfg.route_for_task(t).name for t in TASK_TYPES},
            "low_confidence": (
                {"threshold": cfg.low_confidence.threshold, "route": cfg.low_confidence.route}
                if cfg.low_confidence else None
            ),
            "providers": {name: p.public_view() for name, p in cfg.providers.items()},
            "secrets_source": cfg.secrets.get("source", "env"),
            "cost_baseline": cfg.cost.baseline_provider,
        }

    async def explain(self, request) -> dict[str, Any]:
        """The routing decision, plus which candidates would be skipped now and why."""
        decision = self.router.decide(request)
        states = {b.get("provider"): b for b in await self.breakers.status()}
        skipped = []
        for name in decision.candidates:
            reason = await self._unavailable(name, states.get(name))
            if reason:
                skipped.append({"provider": name, "reason": reason})
        out = decision.to_dict()
        out["skipped"] = skipped
        out["premium_candidates"] = [n for n in decision.candidates if self.config.providers[n].premium]
        out["provider"] = next((n for n in decision.candidates if n not in {s["provider"] for s in skipped}), None)
        if out["provider"]:
            out["model"] = self.config.providers[out["provider"]].model
        return out

    async def _unavailable(self, name: str, breaker: dict[str, Any] | None) -> str | None:
        if not self.config.providers[name].enabled:
            return "disabled"
        if breaker and breaker.get("state") in ("open", "isolated"):
            until = breaker.get("open_until")
            return f"breaker {breaker['state']}" + (f" until {until}" if until else "")
        auth = getattr(self.providers[name], "auth", None)
        if auth is not None:
            try:
                async with asyncio.timeout(2):
                    await auth.headers()
            except Exception as exc:
                return getattr(exc, "message", None) or "credential unavailable"
        return None

    async def cost_report(self, params: Mapping[str, str], now) -> dict[str, Any]:
        from shared.usage.report import cost_report, parse_report_query

        query = parse_report_query(params, now, self.config.cost.max_report_days)
        await self.ledger.flush()
        records = await self.ledger.query(query.start, query.end)
        baseline_name = self.config.cost.baseline_provider
        baseline = None
        if baseline_name:
            from shared.usage.pricing import Price

            p = self.config.providers[baseline_name].price
            baseline = Price(p.input_per_1k, p.output_per_1k)
        report = cost_report(records, query.group_by, baseline, baseline_name)
        report["from"] = query.start.isoformat()
        report["to"] = query.end.isoformat()
        return report

    async def health(self, deep: bool = False) -> dict[str, Any]:
        secrets_status = self.secrets.status()
        providers = {}
        for name, p in self.config.providers.items():
            entry: dict[str, Any] = {"kind": p.kind, "endpoint": p.endpoint, "enabled": p.enabled}
            if p.api_key_secret:
                s = secrets_status.get(p.api_key_secret) if isinstance(secrets_status, dict) else None
                if s is not None:
                    entry["secret"] = {"name": p.api_key_secret, **s}  # status holds no values
                else:
                    entry["secret"] = {"name": p.api_key_secret, "resolved": False}
            providers[name] = entry
        breakers = await self.breakers.status()
        by_name = {b.get("provider"): b for b in breakers}
        for name, entry in providers.items():
            b = by_name.get(name)
            if b:
                entry["breaker"] = b.get("state")
                if b.get("last_failure_class"):
                    entry["last_failure"] = b.get("last_failure_class")
        if deep:
            results = await asyncio.gather(*(probe_endpoint(p.endpoint) for p in self.config.providers.values()))
            for (name, entry), reach in zip(providers.items(), results):
                entry["reachable"] = reach
        return {
            "status": "ok",
            "config": {"status": "loaded", "source": self.config.source},
            "providers": providers,
            "breaker_store": "table" if self.table else "memory",
            "usage_ledger": "table" if self.table else "memory",
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }


async def probe_endpoint(endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
    """Can a TCP connection be opened to the provider's host? (No request is sent.)"""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(parts.hostname, port)
        writer.close()
        return {"ok": True, "connect_ms": round((time.perf_counter() - t0) * 1000, 1)}
    except TimeoutError:
        return {"ok": False, "error": f"no TCP connection within {timeout:g}s"}
    except OSError as exc:
        return {"ok": False, "error": exc.strerror or type(exc).__name__}


# -- the instance's gateway ------------------------------------------------------------
_gateway: Gateway | None = None
_config_error: ConfigError | None = None


def get_gateway(env: Mapping[str, str] | None = None) -> Gateway:
    """The instance's gateway, built on first use; raises ConfigError if the config is bad."""
    global _gateway, _config_error
    if _gateway is not None:
        return _gateway
    if _config_error is not None:
        raise _config_error
    env = os.environ if env is None else env
    _quiet_sdk_http_logs(env)
    _install_redaction()
    _configure_telemetry(env)
    try:
        config = load_from_setting(env)
        _gateway = Gateway(config, env)
    except ConfigError as exc:
        _config_error = exc
        log.error("routing config failed to load: %s", exc)
        raise
    return _gateway


def _quiet_sdk_http_logs(env: Mapping[str, str]) -> None:
    """The Azure SDK logs every HTTP request and response at INFO: far too much for a
    per-request path. Keep warnings unless LLM_AZURE_SDK_HTTP_LOGS=1 asks for them."""
    if env.get("LLM_AZURE_SDK_HTTP_LOGS") != "1":
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        logging.getLogger("azure.identity").setLevel(logging.WARNING)


def _install_redaction() -> None:
    """Scrub any resolved secret value from log records (defence in depth), once."""
    from shared.secrets import install_redaction

    install_redaction()


def _configure_telemetry(env: Mapping[str, str]) -> None:
    """Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set; nothing otherwise."""
    from shared.telemetry import configure_telemetry

    configure_telemetry(env)


def config_error() -> ConfigError | None:
    return _config_error


async def reset_gateway() -> None:
    """Drop the instance's gateway (tests, config reload)."""
    global _gateway, _config_error
    if _gateway is not None:
        await _gateway.close()
    _gateway = None
    _config_error = None
