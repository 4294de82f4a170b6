"""App settings and host.json, read the way Core Tools reads them.

Standard library only: `python -m devhost` loads settings before anything else is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROUTE_PREFIX = "api"


class SettingsError(Exception):
    """local.settings.json or host.json cannot be used; the message names the file."""


@dataclass(frozen=True)
class AppliedSettings:
    path: Path | None
    applied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # already set in the environment, which wins


def load_local_settings(
    path: str | os.PathLike[str],
    environ: MutableMapping[str, str] | None = None,
    *,
    required: bool = False,
) -> AppliedSettings:
    """Copy `Values` from a local.settings.json into `environ` (default: os.environ).

    As with Core Tools, a variable already in the environment wins over the file. A missing
    file is fine unless `required`; an unreadable or malformed one raises SettingsError.
    """
    env = os.environ if environ is None else environ
    p = Path(path)
    if not p.exists():
        if required:
            raise SettingsError(f"{p}: settings file not found")
        return AppliedSettings(path=None)
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{p}: cannot read settings file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(doc, dict):
        raise SettingsError(f"{p}: expected a JSON object with a 'Values' object")
    if doc.get("IsEncrypted") is True:
        raise SettingsError(f"{p}: 'IsEncrypted' is true; decrypt it first (func settings decrypt)")
    values = doc.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsError(f"{p}: 'Values' must be an object of name/string pairs")

    applied: list[str] = []
    skipped: list[str] = []
    for name, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise SettingsError(f"{p}: Values.{name} must be a string, got {type(value).__name__}")
        if name in env:
            skipped.append(name)
        else:
            env[name] = text
            applied.append(name)
    return AppliedSettings(path=p, applied=tuple(applied), skipped=tuple(skipped))


def read_route_prefix(path: str | os.PathLike[str]) -> str:
    """`extensions.http.routePrefix` from host.json; 'api' when the file or key is absent."""
    p = Path(path)
    if not p.exists():
        return DEFAULT_ROUTE_PREFIX
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{p}: cannot read host.json: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    http = (doc.get("extensions") or {}).get("http") or {} if isinstance(doc, dict) else {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX) if isinstance(http, dict) else DEFAULT_ROUTE_PREFIX
    if not isinstance(prefix, str):
        raise SettingsError(f"{p}: extensions.http.routePrefix must be a string")
    return prefix.strip("/")
