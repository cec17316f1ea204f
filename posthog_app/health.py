"""`/healthz` says the process is up; `/readyz` says its dependencies answer."""
from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, JsonResponse

from posthog_app.redis_client import get_client
from temporal.client import check_temporal_health

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database, "redis": _check_redis, "temporal": check_temporal_health}
    down = []
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; say which
            logger.warning("readiness check %s failed: %s", name, exc)
            down.append(name)
    if down:
        return JsonResponse({"status": "unavailable", "down": down}, status=503)
    return JsonResponse({"status": "ok", "checks": list(checks)})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    get_client().ping()
