"""`GET /api/projects/{project_id}/quota_limits/`."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from products.accounts.facade import ProjectScopedAPIView

from . import quota_limiting as ql
from .serializers import QuotaLimitsResponseSerializer, quota_limits_payload

_EXAMPLE = {
    "limited": {
        r.value: {
            "limited": r is ql.QuotaResource.AI_CREDITS,
            "limited_until": "2026-12-01T00:00:00+00:00" if r is ql.QuotaResource.AI_CREDITS else None,
            "suspended_until": None,
        }
        for r in ql.QuotaResource
    }
}


class QuotaStateUnavailableError(exceptions.APIException):
    status_code = 503
    default_detail = "Quota state is temporarily unavailable; try again shortly."
    default_code = "quota_state_unavailable"


class QuotaLimitsView(ProjectScopedAPIView):
    """The project's quota state; an LLM gateway asks this before each billable request."""

    required_scopes = ["project:read", "llm_gateway:read"]
    # The LLM gateway of another deployment asks with the credential its caller presented,
    # which for the server-only products is a server token naming this project.
    accepts_server_tokens = True
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="project_quota_limits_retrieve",
        summary="Quota state of every resource for one project",
        description=(
            "Every resource is present. `limited` is true while the project is over its quota; "
            "`limited_until` and `suspended_until` are ISO-8601 times or null. Personal API keys "
            "need scope `project:read`, `llm_gateway:read` or `*`."
        ),
        responses={
            200: OpenApiResponse(
                QuotaLimitsResponseSerializer,
                examples=[OpenApiExample("AI credits limited", value=_EXAMPLE)],
            ),
            401: OpenApiResponse(description="No credentials, or an invalid key."),
            403: OpenApiResponse(description="The key lacks a required scope."),
            404: OpenApiResponse(description="No such project, or not one the caller can see."),
            503: OpenApiResponse(description="Quota state (Redis) is unreachable."),
        },
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = self.get_project()
        try:
            status = self.read_status(project.api_token)
        except ql.QuotaStateUnavailable as exc:
            raise QuotaStateUnavailableError() from exc
        return Response(quota_limits_payload(status))

    def read_status(self, api_token: str) -> dict[ql.QuotaResource, ql.ResourceQuotaStatus]:
        # A seam for bench/quota_check.py, which compares this with PostHog's cached reads.
        return ql.get_quota_status(api_token)
