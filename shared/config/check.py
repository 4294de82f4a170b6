"""Validate a routing config without starting the gateway.

    python -m shared.config.check [PATH] [--settings local.settings.json]

Without PATH, the LLM_ROUTING_CONFIG setting names the config. `--settings` reads app settings
from a local.settings.json first, the way the Functions host does (the environment wins).
"""

from __future__ import annotations

import os
import sys

from shared.errors import ConfigError

from .loader import load_file, load_from_setting


def _settings(path: str) -> dict[str, str]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f).get("Values", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(path, [f"cannot read app settings: {exc}"]) from None
    return {k: str(v) for k, v in values.items() if isinstance(v, (str, int, float, bool))}


def main(argv: list[str]) -> int:
    env: dict[str, str] = {}
    if "--settings" in argv:
        i = argv.index("--settings")
        settings_path = argv[i + 1] if i + 1 < len(argv) else "local.settings.json"
        argv = argv[:i] + argv[i + 2:]
    else:
        settings_path = None
    try:
        if settings_path:
            env.update(_settings(settings_path))
        env.update(os.environ)
        config = load_file(argv[0], env) if argv else load_from_setting(env)
    except ConfigError as exc:
        print(f"config error in {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{config.source}: OK ({len(config.providers)} providers, {len(config.routes)} routes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
