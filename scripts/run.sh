#!/usr/bin/env bash
# The run command: sets up the environment, then serves function_app.py on
# http://127.0.0.1:7071/api/ with the local host (the same routes as `func start`).
#   scripts/run.sh            # settings from local.settings.json (created from the sample)
#   scripts/run.sh --demo     # plus stand-in providers, no LLM needed
#   scripts/run.sh --port 8080
# Azurite (Table Storage) is started beside it when the settings point at
# UseDevelopmentStorage=true and nothing listens on 127.0.0.1:10002 yet.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [[ ! -f local.settings.json ]]; then
  cp local.settings.sample.json local.settings.json
  echo "run: created local.settings.json from local.settings.sample.json (edit it to add your keys)"
fi

AZURITE_PID=""
cleanup() { [[ -n "$AZURITE_PID" ]] && kill "$AZURITE_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if grep -q 'UseDevelopmentStorage=true' local.settings.json && ! (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then
  mkdir -p .azurite
  node_modules/.bin/azurite-table --location .azurite --skipApiVersionCheck --loose --disableTelemetry \
    --tableHost 127.0.0.1 --tablePort 10002 --silent &
  AZURITE_PID=$!
  echo "run: started Azurite (tables) on 127.0.0.1:10002, data in .azurite/"
fi

"$ROOT/.venv/bin/python" -m shared.config.check --settings local.settings.json || echo "run: the gateway starts anyway; /api/health reports the config problem" >&2
"$ROOT/.venv/bin/python" -m devhost "$@"
