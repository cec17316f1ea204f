"""One place that maps errors to HTTP responses."""
from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render DRF errors as `{"detail": ..., "code": ...}` so callers can branch on a code."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(response.data, dict) and "detail" in response.data:
        code = getattr(exc, "default_code", None)
        detail = getattr(exc, "detail", None)
        code = getattr(detail, "code", None) or code
        response.data = {"detail": str(response.data["detail"]), "code": code}
    return response
