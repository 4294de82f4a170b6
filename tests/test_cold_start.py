"""Cold start: importing the app must not import the heavy SDKs; they load where first used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (FastAPI itself imports the light OpenTelemetry API; the SDK and the Azure distro are ours.)
HEAVY = ("azure.data.tables", "azure.keyvault", "azure.identity", "azure.monitor", "opentelemetry.sdk",
         "jsonschema", "numpy")


def test_importing_the_function_app_loads_no_heavy_sdk():
    code = ("import json, sys; import function_app; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
