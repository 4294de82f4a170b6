"""Static checks that keep the tree clean: no unused imports or variables, no undefined names."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyflakes_class_checks_pass():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (requirements-dev.txt pins it)")
    run = subprocess.run([ruff, "check", "--select", "F", "--target-version", "py313", "--no-cache",
                          "shared", "function_app.py", "devhost", "bench", "tests"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
