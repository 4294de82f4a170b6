"""Routing configuration: JSON Schema, loader and value objects."""

from .loader import SETTING, build_config, load_file, load_from_setting, parse_config, schema, validate
from .model import (
    CostConfig,
    GatewayConfig,
    Limits,
    LowConfidence,
    Price,
    ProviderConfig,
    RouteConfig,
    STRATEGIES,
    Timeouts,
)

__all__ = [
    "SETTING", "build_config", "load_file", "load_from_setting", "parse_config", "schema", "validate",
    "CostConfig", "GatewayConfig", "Limits", "LowConfidence", "Price", "ProviderConfig", "RouteConfig",
    "STRATEGIES", "Timeouts",
]
