"""The gateway's errors: small typed classes, rendered in one place per API shape.

Every refusal is a `GatewayError` with an HTTP status, a provider-style error type and a
code; `render` turns it into the body the caller's SDK understands:
OpenAI `{"error": {"message", "type", "code"}}`, Anthropic
`{"type": "error", "error": {"type", "message"}}`.
"""
from __future__ import annotations

import json
from typing import Literal

from django.http import HttpResponse

ApiShape = Literal["openai", "anthropic"]


class GatewayError(Exception):
    status = 400
    error_type = "invalid_request_error"  # the type both providers use for this status
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(GatewayError):
    status = 400


class Unauthenticated(GatewayError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"
    code = "not_found"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limited"


class UpstreamUnreachable(GatewayError):
    status = 502
    error_type = "api_error"
    code = "upstream_unreachable"


class ProviderNotConfigured(GatewayError):
    status = 503
    error_type = "api_error"
    code = "provider_not_configured"


def error_body(shape: ApiShape, error_type: str, message: str, code: str) -> dict:
    if shape == "anthropic":
        return {"type": "error", "error": {"type": error_type, "message": message}}
    return {"error": {"message": message, "type": error_type, "code": code}}


def render(error: GatewayError, shape: ApiShape, trace_id: str | None = None) -> HttpResponse:
    """Return `error` as a response in the caller's API shape."""
    response = HttpResponse(
        json.dumps(error_body(shape, error.error_type, error.message, error.code)),
        status=error.status,
        content_type="application/json",
    )
    for name, value in error.headers.items():
        response[name] = value
    if trace_id:
        response["X-Trace-Id"] = trace_id
    return response
