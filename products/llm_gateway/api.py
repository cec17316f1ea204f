"""`POST /api/projects/{project_id}/usage_events/`: record metered LLM usage for a project."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from posthog_app.parsers import StrictJSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from products.accounts.api import ProjectScopedAPIView
from products.accounts.models import PersonalAPIKey
from products.billing.usage import InvalidUsageEvents, check_usage_events, record_usage_events

from .serializers import (
    UsageEventBatchSerializer,
    UsageEventSerializer,
    UsageEventsRecordedSerializer,
    UsageEventsRejectedSerializer,
)

_EVENT_EXAMPLE = {
    "uuid": "0192f6a4-3b7c-7d1e-9a51-4b2f0c8e6d10",
    "event": "$ai_generation",
    "timestamp": "2026-11-27T03:00:00Z",
    "properties": {
        "$ai_product": "slack_app",
        "$ai_model": "claude-sonnet-4-5",
        "$ai_provider": "anthropic",
        "$ai_input_tokens": 1200,
        "$ai_output_tokens": 350,
        "$ai_total_cost_usd": 0.0123,
        "$ai_is_error": False,
    },
}


class UsageEventsView(ProjectScopedAPIView):
    """Record `$ai_generation` events; billable ones count against the organization's AI credits."""

    required_scopes = ["llm_gateway:write"]
    http_method_names = ["post", "options"]
    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="project_usage_events_create",
        summary="Record LLM usage events for one project",
        description=(
            "Send one event, or `{\"batch\": [...]}` with up to 1,000 events (a bare JSON array is "
            "accepted too). `$ai_billable` is set from the product registry (after resolving product "
            "aliases), whatever the client sends. Events are idempotent by `uuid` within the project: "
            "a resent event is accepted and not counted twice. If any event is invalid, none is stored "
            "and the 400 response lists every invalid event. Personal API keys need scope "
            "`llm_gateway:write` or `*`."
        ),
        request=PolymorphicProxySerializer(
            component_name="UsageEventsRequest",
            serializers=[UsageEventSerializer, UsageEventBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={
            200: OpenApiResponse(UsageEventsRecordedSerializer, description="Every event accepted."),
            400: OpenApiResponse(UsageEventsRejectedSerializer, description="The batch was refused whole."),
            401: OpenApiResponse(description="No credentials, or an invalid key."),
            403: OpenApiResponse(description="The key lacks scope `llm_gateway:write`."),
            404: OpenApiResponse(description="No such project, or not one the caller can see."),
        },
        examples=[
            OpenApiExample("One event", value=_EVENT_EXAMPLE, request_only=True),
            OpenApiExample("A batch", value={"batch": [_EVENT_EXAMPLE]}, request_only=True),
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = self.get_project()
        try:
            events = check_usage_events(request.data, via_personal_api_key=isinstance(request.auth, PersonalAPIKey))
        except InvalidUsageEvents as exc:
            return Response({"detail": exc.message, "code": "invalid_usage_events", "errors": exc.errors}, status=400)
        recorded = record_usage_events(project, events)
        return Response(
            {"received": recorded.received, "stored": recorded.stored, "duplicates": recorded.duplicates}, status=200
        )
