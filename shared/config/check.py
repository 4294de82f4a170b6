"""Validate a routing config without starting the gateway.

    python -m shared.config.check [PATH]     # default: the LLM_ROUTING_CONFIG setting
"""

from __future__ import annotations

import os
import sys

from shared.errors import ConfigError

from .loader import load_file, load_from_setting


def main(argv: list[str]) -> int:
    try:
        config = load_file(argv[0]) if argv else load_from_setting(os.environ)
    except ConfigError as exc:
        print(f"config error in {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{config.source}: OK ({len(config.providers)} providers, {len(config.routes)} routes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
