"""The docs stay true to the code: every error code the gateway can return is explained."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"""code\s*=\s*["']([a-z_]+)["']""")


def error_codes() -> set[str]:
    codes: set[str] = set()
    for folder in ("shared", "devhost"):
        for path in (ROOT / folder).rglob("*.py"):
            codes.update(CODE.findall(path.read_text(encoding="utf-8")))
    return codes


def test_every_error_code_is_in_the_troubleshooting_guide():
    guide = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    codes = error_codes()
    assert len(codes) > 15  # the scan found the codes (not vacuous)
    missing = sorted(c for c in codes if f"`{c}`" not in guide)
    assert not missing, f"add these codes to docs/troubleshooting.md: {missing}"


def test_docs_link_to_files_that_exist():
    link = re.compile(r"\]\(((?!https?:)[^)#]+)")
    broken = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in link.findall(doc.read_text(encoding="utf-8")):
            if not (doc.parent / target).resolve().exists():
                broken.append(f"{doc.name}: {target}")
    assert not broken, broken
