"""Load and validate the routing config (JSON Schema + cross-reference checks).

Every problem is reported with the field's location and the config's source, and
all problems are reported at once.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from shared.errors import ConfigError
from shared.routing.tasks import TASK_TYPES

from .model import (
    CostConfig,
    Escalation,
    GatewayConfig,
    Limits,
    LowConfidence,
    Price,
    ProviderConfig,
    RouteConfig,
    Timeouts,
)

SCHEMA_PATH = Path(__file__).with_name("schema.json")
APP_ROOT = Path(__file__).resolve().parents[2]
SETTING = "LLM_ROUTING_CONFIG"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def load_from_setting(env: Mapping[str, str]) -> GatewayConfig:
    """Load the config named by the LLM_ROUTING_CONFIG app setting."""
    value = env.get(SETTING, "").strip()
    if not value:
        raise ConfigError(SETTING, [f"app setting {SETTING} is not set (a config file path or the JSON itself)"])
    if value.startswith("{"):
        return parse_config(value, f"{SETTING} (inline JSON)", env)
    return load_file(value, env)


def load_file(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    p = Path(path)
    if not p.is_absolute():
        p = APP_ROOT / p
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [f"file not found: {p}"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read {p}: {exc.strerror}"]) from None
    return parse_config(text, source, env)


def parse_config(text: str, source: str, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    return build_config(raw, source, env)


_SETTING_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_settings(raw: Any, env: Mapping[str, str], path: str = "", problems: list[str] | None = None) -> Any:
    """Replace `${NAME}` in string values with the app setting NAME (e.g. an endpoint that
    differs per environment). Secrets never go here: providers name them (`api_key_secret`)."""
    problems = [] if problems is None else problems
    if isinstance(raw, dict):
        return {k: expand_settings(v, env, f"{path}.{k}" if path else k, problems) for k, v in raw.items()}
    if isinstance(raw, list):
        return [expand_settings(v, env, f"{path}[{i}]", problems) for i, v in enumerate(raw)]
    if isinstance(raw, str) and "${" in raw:
        def sub(m: re.Match) -> str:
            value = env.get(m.group(1))
            if not value:
                problems.append(f"{path}: app setting {m.group(1)} is not set (referenced as ${{{m.group(1)}}})")
                return m.group(0)
            return value

        return _SETTING_REF.sub(sub, raw)
    return raw


def build_config(raw: Any, source: str, env: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if env is None else env
    expansion_problems: list[str] = []
    raw = expand_settings(raw, env, "", expansion_problems)
    if expansion_problems:
        raise ConfigError(source, expansion_problems)
    problems = validate(raw)
    if problems:
        raise ConfigError(source, problems)
    doc = _with_defaults(copy.deepcopy(raw), schema())
    problems = _cross_check(doc)
    if problems:
        raise ConfigError(source, problems)
    return _build(doc, raw, source)


def validate(raw: Any) -> list[str]:
    """Schema problems as `location: message` strings (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for err in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        where = _path(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            msg = f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
            allowed = sorted(err.schema.get("properties", {}))
            if allowed:
                msg += f" (allowed: {', '.join(allowed)})"
        elif err.validator == "enum":
            msg = f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
        else:
            msg = err.message
        problems.append(f"{where}: {msg}")
    return problems


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return root["$defs"][ref.split("/")[-1]]
    return node


def _with_defaults(obj: Any, node: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """Fill schema defaults for missing properties, recursively (the schema is the one source)."""
    root = root or node
    node = _resolve(node, root)
    if not isinstance(obj, dict):
        return obj
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in obj and "default" in sub:
            obj[key] = copy.deepcopy(sub["default"])
        elif key not in obj and sub.get("type") == "object" and "properties" in sub and not sub.get("required"):
            obj[key] = {}
        if key in obj:
            obj[key] = _with_defaults(obj[key], sub, root)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in list(obj):
            if key not in node.get("properties", {}):
                obj[key] = _with_defaults(obj[key], extra, root)
    return obj


def _cross_check(doc: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    providers: dict[str, Any] = doc["providers"]
    routes: dict[str, Any] = doc["routes"]
    for name, p in providers.items():
        where = f"providers.{name}"
        auth = p.get("auth") or ("none" if p["kind"] == "ollama" else "api_key")
        if p["kind"] == "azure_openai" and not p.get("deployment"):
            problems.append(f"{where}.deployment: required for kind azure_openai")
        if p["kind"] != "azure_openai" and "deployment" in p:
            problems.append(f"{where}.deployment: only valid for kind azure_openai")
        if auth == "api_key" and not p.get("api_key_secret"):
            problems.append(f"{where}.api_key_secret: required when auth is api_key (name the secret holding the key)")
        if auth == "entra_id" and p["kind"] != "azure_openai":
            problems.append(f"{where}.auth: entra_id is only supported for kind azure_openai")
        for i, fb in enumerate(p.get("fallbacks", [])):
            if fb not in providers:
                problems.append(f"{where}.fallbacks[{i}]: unknown provider {fb!r}")
            elif fb == name:
                problems.append(f"{where}.fallbacks[{i}]: a provider cannot fall back to itself")
    for name, r in routes.items():
        if name == "auto":
            problems.append("routes.auto: 'auto' is reserved (it means: route by task type)")
        if name in providers:
            problems.append(f"routes.{name}: a route and a provider share this name, so `model: {name}` would be ambiguous")
        for i, cand in enumerate(r["candidates"]):
            if cand not in providers:
                problems.append(f"routes.{name}.candidates[{i}]: unknown provider {cand!r}")
    if "auto" in providers:
        problems.append("providers.auto: 'auto' is reserved (it means: route by task type)")
    if "default" not in routes:
        missing = [t for t in TASK_TYPES if t not in routes]
        if missing:
            problems.append(f"routes: add a 'default' route or routes for every task type (missing: {', '.join(missing)})")
    for i, task in enumerate((doc.get("escalation") or {}).get("task_types", [])):
        if task not in routes and "default" not in routes:
            problems.append(f"escalation.task_types[{i}]: no route serves {task!r}")
    low = doc.get("low_confidence")
    if low and low["route"] not in routes:
        problems.append(f"low_confidence.route: unknown route {low['route']!r}")
    baseline = doc.get("cost", {}).get("baseline_provider")
    if baseline and baseline not in providers:
        problems.append(f"cost.baseline_provider: unknown provider {baseline!r}")
    secrets = doc.get("secrets", {})
    if secrets.get("source") != "keyvault" and ("vault_url" in secrets or "managed_identity_client_id" in secrets):
        problems.append("secrets.vault_url: only valid with source keyvault")
    return problems


def _build(doc: dict[str, Any], raw: dict[str, Any], source: str) -> GatewayConfig:
    breaker_defaults = doc.get("breaker", {})
    providers = {}
    for name, p in doc["providers"].items():
        t = p["timeouts"]
        providers[name] = ProviderConfig(
            name=name,
            kind=p["kind"],
            endpoint=p["endpoint"].rstrip("/"),
            model=p["model"],
            deployment=p.get("deployment"),
            api_version=p["api_version"],
            auth=p.get("auth") or ("none" if p["kind"] == "ollama" else "api_key"),
            api_key_secret=p.get("api_key_secret"),
            price=Price(**p["price"]) if "price" in p else Price(),
            quality=float(p["quality"]),
            premium=bool(p["premium"]),
            expected_latency_ms=float(p["expected_latency_ms"]),
            timeouts=Timeouts(**t),
            fallbacks=tuple(p["fallbacks"]),
            breaker={**breaker_defaults, **raw["providers"][name].get("breaker", {})},
            enabled=p["enabled"],
        )
    routes = {
        name: RouteConfig(name, tuple(r["candidates"]), r.get("strategy"), r.get("description"))
        for name, r in doc["routes"].items()
    }
    low = doc.get("low_confidence")
    cost = doc["cost"]
    return GatewayConfig(
        source=source,
        providers=providers,
        routes=routes,
        default_strategy=doc["default_strategy"],
        limits=Limits(**doc["limits"]),
        secrets=doc["secrets"],
        cost=CostConfig(cost.get("baseline_provider"), cost["max_report_days"]),
        low_confidence=LowConfidence(low["threshold"], low["route"]) if low else None,
        escalation=(Escalation(tuple(doc["escalation"]["task_types"]), doc["escalation"]["min_probability"])
                    if doc.get("escalation") else None),
        description=doc.get("description"),
    )
