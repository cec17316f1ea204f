"""`POST /api/projects/{project_id}/usage_events/`: record metered LLM usage for a project."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from posthog_app.parsers import StrictJSONParser
from products.accounts.facade import PersonalAPIKey, ProjectScopedAPIView
from products.billing.facade import record_usage_events

from .serializers import (
    UsageEventsRecordedSerializer,
    UsageEventsRejectedSerializer,
    UsageEventSerializer,
    UsageEventBatchSerializer,
    rejection_body,
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
_UNBILLED_EXAMPLE = {
    **_EVENT_EXAMPLE,
    "uuid": "0192f6a4-3b7c-7d1e-9a51-4b2f0c8e6d11",
    "properties": {**_EVENT_EXAMPLE["properties"], "$ai_product": "posthog_code", "$ai_total_cost_usd": 0.5},
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
            "aliases), whatever the client sends: `slack_app` and `slack_app_routing` are billable, "
            "`posthog_code` is not (it is billed elsewhere). The response says how many of the events are "
            "billable and how many AI credits they carry (1 credit = $0.01 of cost, markup included). "
            "Events are idempotent by `uuid` within the project: a resent event is accepted and not counted "
            "twice; the same uuid twice in one batch must have the same contents. If any event is invalid, "
            "none is stored and the 400 response lists every invalid event. A body nested deeper than 64 "
            "levels, or holding a lone UTF-16 surrogate or a NUL character, is a 400 too. Personal API keys "
            "need scope `llm_gateway:write` or `*`."
        ),
        request=PolymorphicProxySerializer(
            component_name="UsageEventsBody",
            serializers=[UsageEventSerializer, UsageEventBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={
            200: OpenApiResponse(UsageEventsRecordedSerializer, description="Every event accepted."),
            400: OpenApiResponse(UsageEventsRejectedSerializer, description="The request was refused whole."),
            401: OpenApiResponse(description="No credentials, or an invalid key."),
            403: OpenApiResponse(description="The key lacks scope `llm_gateway:write`."),
            404: OpenApiResponse(description="No such project, or not one the caller can see."),
        },
        examples=[
            OpenApiExample("One event", value=_EVENT_EXAMPLE, request_only=True),
            OpenApiExample("A batch", value={"batch": [_EVENT_EXAMPLE, _UNBILLED_EXAMPLE]}, request_only=True),
            OpenApiExample(
                "Recorded",
                value={"received": 2, "stored": 2, "duplicates": 0, "billable": 1, "credits": 1},
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "Refused",
                value={
                    "detail": "1 event is invalid; nothing was recorded.",
                    "code": "invalid_usage_events",
                    "errors": [
                        {
                            "index": 1,
                            "uuid": "0192f6a4-3b7c-7d1e-9a51-4b2f0c8e6d11",
                            "errors": {"properties.$ai_product": ["Unknown product 'mystery'; expected one of: ..."]},
                        }
                    ],
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = self.get_project()
        serializer = UsageEventBatchSerializer(
            data=request.data, context={"via_personal_api_key": isinstance(request.auth, PersonalAPIKey)}
        )
        if not serializer.is_valid():
            return Response(rejection_body(serializer.errors, request.data), status=400)
        recorded = record_usage_events(project, serializer.checked_events())
        return Response(
            {
                "received": recorded.received,
                "stored": recorded.stored,
                "duplicates": recorded.duplicates,
                "billable": recorded.billable,
                "credits": recorded.credits,
            },
            status=200,
        )
