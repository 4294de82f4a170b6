"""The newcomer's path: demo mode and the offline run, over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import openai

from devhost.testing import start_devhost

ROOT = Path(__file__).resolve().parent.parent


def test_demo_mode_routes_fails_over_and_streams():
    url, stop = start_devhost(extra_args=["--demo"], env={"LLM_ROUTING_CONFIG": None, "LLM_TABLE_CONNECTION": None,
                                                           "AzureWebJobsStorage": None})
    try:
        client = openai.OpenAI(base_url=f"{url}/api/v1", api_key="unused", max_retries=0, timeout=20)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello"}], extra_headers={"X-Task-Type": "chat"})
        assert raw.headers["X-LLM-Provider"] == "demo-local"
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Task-Type": "code"})
        assert raw.headers["X-LLM-Provider"] == "demo-gpt-4o"
        assert httpx.post(f"{url}/api/routing/breakers/demo-local/isolate").status_code == 200
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello"}], extra_headers={"X-Task-Type": "chat"})
        assert raw.headers["X-LLM-Provider"] == "demo-mini"
        assert raw.headers["X-LLM-Attempts"].startswith("demo-local:skipped")
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="demo-mini", stream=True, messages=[{"role": "user", "content": "tell me a story"}]) if c.choices)
        assert text.startswith("[demo-mini]")
        assert "Demo stand-in providers" in stop.output()
    finally:
        stop()


def test_offline_run_starts_and_says_which_provider_is_unreachable():
    """The development sample config with no LLM reachable: the gateway starts and explains."""
    env = {"LLM_ROUTING_CONFIG": "shared/config/samples/development.json", "AZURE_OPENAI_KEY": "",
           "LLM_TABLE_CONNECTION": None, "AzureWebJobsStorage": None}
    url, stop = start_devhost(env=env)
    try:
        health = httpx.get(f"{url}/api/health?deep=true", timeout=20).json()
        assert health["config"]["status"] == "loaded"
        local = health["providers"]["ollama-llama"]
        assert local["reachable"]["ok"] is False and local["reachable"]["error"]
        azure = health["providers"]["azure-gpt-4o"]
        assert azure["secret"]["name"] == "azure-openai-key"
        r = httpx.post(f"{url}/api/v1/chat/completions", timeout=30,
                       json={"messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 503
        err = r.json()["error"]
        assert err["code"] == "all_providers_failed"
        assert "ollama-llama:failed(connect_error)" in err["message"]
        assert "azure-openai-key" in err["message"]  # the Azure candidates were skipped: no key
        assert "Traceback" not in r.text
    finally:
        stop()


def test_invalid_config_is_a_clear_start_up_error_and_health_reports_it(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"providers": {"p": {"kind": "azure", "endpoint": "x", "model": "m"}}, "routes": {}}))
    check = subprocess.run([sys.executable, "-m", "shared.config.check", str(bad)], cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "providers.p.kind" in check.stderr
    url, stop = start_devhost(env={"LLM_ROUTING_CONFIG": str(bad)})
    try:
        r = httpx.get(f"{url}/api/health")
        assert r.status_code == 503
        body = r.json()
        assert body["config"]["status"] == "invalid" and any("providers.p.kind" in p for p in body["config"]["problems"])
        r = httpx.post(f"{url}/api/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "config_unavailable"
        assert "providers.p.kind" in r.json()["error"]["message"]
    finally:
        stop()
