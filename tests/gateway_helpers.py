"""Build gateways over fake providers for tests (Python API and HTTP)."""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, Iterator

import httpx2 as httpx

from shared import gateway as gateway_module

from shared.config import build_config
from shared.gateway import Gateway


def openai_provider(fake, model: str, *, secret: str | None = None, price=(0.001, 0.002), quality=0.5,
                    premium=False, **extra) -> dict[str, Any]:
    return {"kind": "openai", "endpoint": fake.openai_base_url, "model": model,
            "api_key_secret": secret or f"{fake.name}-key",
            "price": {"input_per_1k": price[0], "output_per_1k": price[1]}, "quality": quality,
            "premium": premium, **extra}


def azure_provider(fake, deployment: str, *, secret: str | None = None, price=(0.0025, 0.01), quality=0.9,
                   premium=True, **extra) -> dict[str, Any]:
    return {"kind": "azure_openai", "endpoint": fake.azure_endpoint, "deployment": deployment, "model": deployment,
            "api_key_secret": secret or f"{fake.name}-key",
            "price": {"input_per_1k": price[0], "output_per_1k": price[1]}, "quality": quality,
            "premium": premium, **extra}


def ollama_provider(fake, model: str = "llama3.2", *, quality=0.5, **extra) -> dict[str, Any]:
    return {"kind": "ollama", "endpoint": fake.ollama_endpoint, "model": model,
            "price": {"input_per_1k": 0, "output_per_1k": 0}, "quality": quality, **extra}


def env_for(*fakes) -> dict[str, str]:
    """Env-mode secrets: `<name>-key` -> the fake's current key."""
    return {f"{f.name}-key".upper().replace("-", "_"): f.api_key for f in fakes}


def make_gateway(doc: dict[str, Any], env: dict[str, str], **kw) -> Gateway:
    return Gateway(build_config(doc, "test config"), env, **kw)


def config_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


_ASGI = None


def function_app_asgi():
    """The ASGI app serving function_app.py's functions (built once per process)."""
    global _ASGI
    if _ASGI is None:
        from devhost.app import build_asgi
        from function_app import app

        _ASGI = build_asgi(app)
    return _ASGI


@contextlib.contextmanager
def installed(gateway) -> Iterator[None]:
    """`gateway` as the instance's gateway (what function_app.py serves) while in the block."""
    saved = gateway_module._gateway, gateway_module._config_error
    gateway_module._gateway, gateway_module._config_error = gateway, None
    try:
        yield
    finally:
        gateway_module._gateway, gateway_module._config_error = saved


@contextlib.asynccontextmanager
async def asgi_client(gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for function_app.py in-process, with `gateway` as the instance's gateway."""
    with installed(gateway):
        transport = httpx.ASGITransport(app=function_app_asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test", timeout=10) as client:
            yield client
