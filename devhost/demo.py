"""Demo mode: stand-in providers beside the gateway, so routing, hints, failover and
streaming can be tried in a minute with curl or the `openai` SDK, offline.

The stand-ins are the same wire-level fakes the tests use (`tests/fakes/llm.py`):
an Ollama-native local model, an OpenAI-compatible cheap model and an Azure OpenAI
premium deployment, each with realistic latency. The demo writes the routing
config (inline, into LLM_ROUTING_CONFIG) and the stand-in keys into the environment
before the app is imported.
"""

from __future__ import annotations

import json
import os


def demo_config(local, cheap, premium) -> dict:
    return {
        "description": "Demo: stand-in providers on 127.0.0.1 (python -m devhost --demo)",
        "default_strategy": "cost",
        "secrets": {"source": "env"},
        "providers": {
            "demo-local": {"kind": "ollama", "endpoint": local.ollama_endpoint, "model": "llama3.2:3b",
                           "price": {"input_per_1k": 0, "output_per_1k": 0}, "quality": 0.55,
                           "expected_latency_ms": 80, "fallbacks": ["demo-mini"],
                           "timeouts": {"first_byte_seconds": 2}},
            "demo-mini": {"kind": "openai", "endpoint": cheap.openai_base_url, "model": "gpt-4o-mini",
                          "api_key_secret": "demo-mini-key", "price": {"input_per_1k": 0.00015, "output_per_1k": 0.0006},
                          "quality": 0.75, "expected_latency_ms": 200},
            "demo-gpt-4o": {"kind": "azure_openai", "endpoint": premium.azure_endpoint, "deployment": "gpt-4o",
                            "model": "gpt-4o", "api_key_secret": "demo-azure-key",
                            "price": {"input_per_1k": 0.0025, "output_per_1k": 0.01}, "quality": 0.92,
                            "premium": True, "expected_latency_ms": 400, "fallbacks": ["demo-mini"]},
        },
        "routes": {
            "code": {"candidates": ["demo-gpt-4o", "demo-mini"], "strategy": "quality"},
            "reasoning": {"candidates": ["demo-gpt-4o", "demo-mini"], "strategy": "quality"},
            "default": {"candidates": ["demo-local", "demo-mini", "demo-gpt-4o"]},
        },
        "low_confidence": {"threshold": 0.3, "route": "default"},
        "cost": {"baseline_provider": "demo-gpt-4o"},
    }


def start_demo():
    from tests.fakes.llm import FakeLLM, FakeLLMThread

    local = FakeLLM("demo-local", latency=0.05, chunk_interval=0.03, chunks=12)
    cheap = FakeLLM("demo-mini", api_key="demo-mini-secret", latency=0.15, chunk_interval=0.02, chunks=12)
    premium = FakeLLM("demo-gpt-4o", api_key="demo-azure-secret", latency=0.3, chunk_interval=0.02, chunks=12)
    thread = FakeLLMThread(local, cheap, premium)
    thread.__enter__()
    os.environ["LLM_ROUTING_CONFIG"] = json.dumps(demo_config(local, cheap, premium))
    os.environ["DEMO_MINI_KEY"] = cheap.api_key
    os.environ["DEMO_AZURE_KEY"] = premium.api_key
    print("Demo stand-in providers (wire-level fakes, no real LLM):", flush=True)
    print(f"  demo-local   Ollama        {local.ollama_endpoint}/api/chat", flush=True)
    print(f"  demo-mini    OpenAI        {cheap.openai_base_url}/chat/completions", flush=True)
    print(f"  demo-gpt-4o  Azure OpenAI  {premium.azure_endpoint}/openai/deployments/gpt-4o/...", flush=True)
    print("  LLM_ROUTING_CONFIG is set to the demo config for this run.", flush=True)
    print("  Try a failover: stop nothing, just pin a provider that fails: see README 'Demo'.", flush=True)

    def stop() -> None:
        thread.__exit__(None, None, None)

    return stop
