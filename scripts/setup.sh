#!/usr/bin/env bash
# Create or refresh the project's environment: a Python 3.13 virtualenv with the pinned
# requirements (deployed + dev), and the npm tools (Azurite). Idempotent and quick when
# nothing changed. Sourced by run.sh and test.sh; can be run on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
  local candidates=()
  [[ -n "${PYTHON:-}" ]] && candidates+=("$PYTHON")
  candidates+=(python3.13)
  if command -v pyenv >/dev/null 2>&1; then
    local v
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -rV); do
      candidates+=("$(pyenv root)/versions/$v/bin/python3.13")
    done
  fi
  candidates+=(/usr/local/bin/python3.13 /usr/bin/python3.13)
  local c
  for c in "${candidates[@]}"; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
  PY="$(find_python)" || {
    echo "setup: Python 3.13 is required and none was found." >&2
    echo "       Install it (for example: pyenv install 3.13.0, or your OS package python3.13)," >&2
    echo "       or point PYTHON=/path/to/python3.13 at it, then run this again." >&2
    exit 1
  }
  echo "setup: creating .venv with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.requirements.sha"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" ]] || [[ "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "setup: installing Python packages (pinned)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$ROOT/requirements-dev.txt"
  echo "$WANT" > "$STAMP"
fi

if [[ "${SETUP_SKIP_NPM:-0}" != "1" ]] && [[ ! -x "$ROOT/node_modules/.bin/azurite-table" ]]; then
  command -v npm >/dev/null 2>&1 || { echo "setup: npm (Node.js 20) is required for Azurite" >&2; exit 1; }
  echo "setup: installing Azurite (npm ci)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
fi
