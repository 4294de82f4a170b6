"""Render the option reference of docs/configuration.md from shared/config/schema.json.

    python scripts/config_reference.py          # rewrite the generated section
    python scripts/config_reference.py --check  # exit 1 if the docs are out of date

The prose around the generated section is hand-written; the table is the schema's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "shared" / "config" / "schema.json"
DOC = ROOT / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED: option reference (scripts/config_reference.py) -->"
END = "<!-- END GENERATED -->"


def _type(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    t = node.get("type", "object" if "properties" in node or "additionalProperties" in node else "")
    if t == "array":
        return f"array of {node.get('items', {}).get('type', 'any')}"
    return t


def options(schema: dict) -> list[tuple[str, dict]]:
    """Every option as (dotted path, schema node), depth first, `<name>` for map keys."""
    defs = schema.get("$defs", {})

    def resolve(node: dict) -> dict:
        ref = node.get("$ref")
        if ref:
            target = defs[ref.split("/")[-1]]
            return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    out: list[tuple[str, dict]] = []

    def walk(node: dict, prefix: str) -> None:
        node = resolve(node)
        for key, sub in node.get("properties", {}).items():
            sub = resolve(sub)
            path = f"{prefix}.{key}" if prefix else key
            out.append((path, sub))
            walk(sub, path)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{prefix}.<name>")

    walk(schema, "")
    return out


def render(schema: dict) -> str:
    lines = [BEGIN, "", "| option | type | default | description |", "| --- | --- | --- | --- |"]
    for path, node in options(schema):
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        desc = node.get("description", "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{path}` | {_type(node)} | {default} | {desc} |")
    lines += ["", END]
    return "\n".join(lines)


def updated(doc: str, schema: dict) -> str:
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    return doc[:start] + render(schema) + doc[end:]


def main(argv: list[str]) -> int:
    schema = json.loads(SCHEMA.read_text())
    doc = DOC.read_text()
    new = updated(doc, schema)
    if "--check" in argv:
        if new != doc:
            print("docs/configuration.md is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
