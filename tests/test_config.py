"""The routing config: schema, samples, error messages, and the docs kept in step."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import build_config, load_file, load_from_setting, schema
from shared.errors import ConfigError
from shared.routing.tasks import TASK_TYPES

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "shared" / "config" / "samples").glob("*.json"))


def minimal() -> dict:
    return {
        "providers": {"p": {"kind": "openai", "endpoint": "https://x/v1", "model": "m", "api_key_secret": "k"}},
        "routes": {"default": {"candidates": ["p"]}},
    }


def problems_of(doc) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(doc, "cfg.json")
    assert info.value.source == "cfg.json"
    assert "cfg.json" in str(info.value)
    return info.value.problems


def test_the_three_samples_are_valid_and_cover_their_scenarios():
    assert [p.stem for p in SAMPLES] == ["development", "production", "staging"]
    env = {"AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com"}
    configs = {p.stem: load_file(p, env) for p in SAMPLES}
    dev, stage, prod = configs["development"], configs["staging"], configs["production"]
    assert dev.secrets["source"] == "env"
    assert any(p.kind == "ollama" for p in dev.providers.values())
    assert dev.providers["ollama-llama"].fallbacks and dev.providers[dev.providers["ollama-llama"].fallbacks[0]].kind == "azure_openai"
    assert stage.secrets["source"] == "keyvault" and prod.secrets["source"] == "keyvault"
    assert prod.default_strategy == "cost"
    for task in ("code", "reasoning"):
        assert all(prod.providers[c].premium for c in prod.route_for_task(task).candidates)
    for cfg in configs.values():
        for task in TASK_TYPES:
            assert cfg.route_for_task(task).candidates


def test_defaults_come_from_the_schema():
    cfg = build_config(minimal(), "x")
    s = schema()
    assert cfg.limits.max_body_bytes == s["properties"]["limits"]["properties"]["max_body_bytes"]["default"] == 1048576
    p = cfg.providers["p"]
    assert p.timeouts.connect_seconds == s["$defs"]["provider"]["properties"]["timeouts"]["properties"]["connect_seconds"]["default"]
    assert p.breaker["consecutive_failures"] == s["$defs"]["breaker"]["properties"]["consecutive_failures"]["default"]
    assert p.auth == "api_key"


def test_provider_breaker_overrides_merge_over_top_level_defaults():
    doc = minimal()
    doc["breaker"] = {"consecutive_failures": 3, "open_seconds": 9}
    doc["providers"]["p"]["breaker"] = {"open_seconds": 4}
    b = build_config(doc, "x").providers["p"].breaker
    assert (b["consecutive_failures"], b["open_seconds"]) == (3, 4)


def test_unknown_keys_are_errors_naming_the_field():
    doc = minimal()
    doc["providers"]["p"]["temprature"] = 1
    doc["rotues"] = {}
    problems = problems_of(doc)
    assert any(p.startswith("(root): unknown key 'rotues'") for p in problems)
    assert any(p.startswith("providers.p: unknown key 'temprature'") for p in problems)


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["providers"]["p"].update(kind="azure"), "providers.p.kind: 'azure' is not one of"),
    (lambda d: d["providers"]["p"].pop("api_key_secret"), "providers.p.api_key_secret: required"),
    (lambda d: d["routes"]["default"]["candidates"].append("q"), "routes.default.candidates[1]: unknown provider 'q'"),
    (lambda d: d["routes"].update(code={"candidates": ["p"]}) or d["routes"].pop("default"), "routes: add a 'default' route"),
    (lambda d: d["providers"]["p"].update(kind="azure_openai"), "providers.p.deployment: required for kind azure_openai"),
    (lambda d: d["providers"]["p"].update(auth="entra_id"), "providers.p.auth: entra_id is only supported"),
    (lambda d: d["providers"]["p"].update(quality=2), "providers.p.quality: 2 is greater than the maximum"),
    (lambda d: d["routes"].update(p={"candidates": ["p"]}), "routes.p: a route and a provider share this name"),
    (lambda d: d.update(low_confidence={"route": "nope"}), "low_confidence.route: unknown route 'nope'"),
    (lambda d: d.update(cost={"baseline_provider": "nope"}), "cost.baseline_provider: unknown provider 'nope'"),
    (lambda d: d.update(limits={"total_timeout_seconds": 300}), "limits.total_timeout_seconds: 300 is greater than the maximum of 225"),
    (lambda d: d["providers"]["p"].update(fallbacks=["p"]), "providers.p.fallbacks[0]: a provider cannot fall back to itself"),
])
def test_each_error_names_field_and_problem(mutate, expected):
    doc = copy.deepcopy(minimal())
    mutate(doc)
    problems = problems_of(doc)
    assert any(p.startswith(expected) for p in problems), problems


def test_setting_accepts_a_path_or_inline_json_and_names_the_source(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(minimal()))
    assert load_from_setting({"LLM_ROUTING_CONFIG": str(path)}).source == str(path)
    assert load_from_setting({"LLM_ROUTING_CONFIG": json.dumps(minimal())}).source.endswith("(inline JSON)")
    with pytest.raises(ConfigError, match="not set"):
        load_from_setting({})
    with pytest.raises(ConfigError, match="file not found"):
        load_from_setting({"LLM_ROUTING_CONFIG": str(tmp_path / "missing.json")})
    bad = tmp_path / "bad.json"
    bad.write_text('{"providers": {,}')
    with pytest.raises(ConfigError, match=r"bad.json.*line 1 column 16"):
        load_file(bad)


def test_check_command_reports_problems_and_exit_code(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"providers": {}, "routes": {}}))
    run = subprocess.run([sys.executable, "-m", "shared.config.check", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1 and "providers" in run.stderr
    ok = subprocess.run([sys.executable, "-m", "shared.config.check", str(SAMPLES[0])], cwd=ROOT, capture_output=True, text=True,
                        env={"PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_configuration_doc_matches_the_schema():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert config_reference.updated(doc, schema()) == doc, "run: python scripts/config_reference.py"
    for path, node in config_reference.options(schema()):
        assert f"`{path}`" in doc
        assert node.get("description"), f"{path} has no description in the schema"


def test_app_setting_references_expand_and_missing_ones_are_named():
    doc = minimal()
    doc["providers"]["p"]["endpoint"] = "${MY_ENDPOINT}/v1"
    cfg = build_config(doc, "cfg.json", {"MY_ENDPOINT": "https://llm.example.com"})
    assert cfg.providers["p"].endpoint == "https://llm.example.com/v1"
    with pytest.raises(ConfigError) as info:
        build_config(doc, "cfg.json", {})
    assert info.value.problems == ["providers.p.endpoint: app setting MY_ENDPOINT is not set (referenced as ${MY_ENDPOINT})"]
