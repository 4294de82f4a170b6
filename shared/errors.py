"""The gateway's error hierarchy, and the one place it maps to OpenAI error bodies.

    GatewayError                      -> any error a caller can see
    ├── InvalidRequest (400)          -> bad JSON, bad field, unknown task type/strategy
    ├── PayloadTooLarge (413)         -> body or message limits
    ├── NotFound (404)                -> unknown model/route/provider, unknown path
    ├── Unauthorized / Forbidden      -> not used by the gateway itself (Functions keys)
    ├── UpstreamRejected (4xx)        -> a provider's non-retryable 4xx, passed through as-is
    ├── AllProvidersFailed (503)      -> every candidate failed or was skipped
    ├── DeadlineExceeded (504)        -> the total request budget ran out
    └── ConfigUnavailable (503)       -> the routing config did not load

Error messages never include secret values: they are built from names only.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body: {"error": {message, type, param, code}}."""
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        err.update(self.extra)
        return {"error": err}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamRejected(GatewayError):
    """A provider's non-retryable 4xx: returned to the caller with its status."""

    type = "invalid_request_error"
    code = "upstream_rejected"


class AllProvidersFailed(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "all_providers_failed"


class DeadlineExceeded(GatewayError):
    status = 504
    type = "timeout"
    code = "deadline_exceeded"


class ConfigUnavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "config_unavailable"


class ConfigError(Exception):
    """The routing configuration is invalid. Raised at start-up; names field and source."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        joined = "; ".join(self.problems)
        super().__init__(f"invalid routing config ({source}): {joined}")
