#!/usr/bin/env bash
# The test command: sets up everything on a fresh machine (Python 3.13 venv, pinned packages,
# Azurite from npm) and runs the whole suite. Tests that use Table Storage start the real Azurite
# themselves (tests/azurite.py: loopback, in memory, a free port) and stop it afterwards.
#   scripts/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:randomly "$@"
