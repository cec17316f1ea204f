"""REST API for task runners: list and read a project's tasks, report a run's progress.

    GET   /api/projects/{project_id}/tasks/
    GET   /api/projects/{project_id}/tasks/{task_id}/
    PATCH /api/projects/{project_id}/tasks/{task_id}/runs/{run_id}/

Views only look things up, call `services`, and serialize; refusals from `services`
become HTTP errors in `_as_api_error`, the one place that maps them.
"""
from __future__ import annotations

from django.http import Http404
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.generics import ListAPIView
from rest_framework.pagination import LimitOffsetPagination
from posthog_app.parsers import StrictJSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from products.accounts.facade import ProjectScopedAPIView

from . import services
from .models import Task, TaskRun
from .serializers import (
    RunStatusUpdateSerializer,
    TaskDetailSerializer,
    TaskErrorSerializer,
    TaskListItemSerializer,
    TaskRunSerializer,
)

_STATUSES = [s.value for s in TaskRun.Status]

_RUN_STATUS_REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": list(services.REPORTABLE_STATUSES),
            "description": RunStatusUpdateSerializer().fields["status"].help_text,
        }
    },
    "required": ["status"],
    # Only `status`: an unknown field is a 400 naming it, not silently ignored (a runner that
    # misspells a field, or sends one a later version will read, learns it at once).
    "additionalProperties": False,
}

_AUTH_RESPONSES = {
    401: OpenApiResponse(description="No credentials, or an invalid key."),
    404: OpenApiResponse(description="No such project or task, or not one the caller can see."),
}


class TaskAPIError(exceptions.APIException):
    """A refusal with a reason and a code, at the status chosen by the caller."""

    def __init__(self, status_code: int, detail: str, code: str) -> None:
        self.status_code = status_code
        super().__init__(detail=detail, code=code)


_RUN_STATUS_HTTP = {
    services.UnknownRunStatus: 400,
    services.RunAlreadyFinished: 409,
    services.TransitionNotAllowed: 409,
}


def _as_api_error(exc: services.RunStatusError) -> TaskAPIError:
    return TaskAPIError(_RUN_STATUS_HTTP.get(type(exc), 400), exc.message, exc.code)


class TaskPagination(LimitOffsetPagination):
    """`limit` (1 or more, capped at 100) and `offset` (0 or more); anything else is a 400, not silently ignored."""

    default_limit = 20
    max_limit = 100

    def get_limit(self, request: Request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        return min(_whole_number(raw, self.limit_query_param, minimum=1), self.max_limit)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        return 0 if raw is None else _whole_number(raw, self.offset_query_param, minimum=0)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = f"Tasks per page: default {self.default_limit}, larger values are capped at {self.max_limit}."
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"]["minimum"] = 0
                parameter["description"] = "How many tasks to skip."
        return parameters


def _whole_number(raw: str, name: str, minimum: int) -> int:
    if not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
        raise TaskAPIError(400, f"`{name}` must be a whole number of at least {minimum}, not {raw!r}.", "invalid_pagination")
    return int(raw)


class TaskListView(ProjectScopedAPIView, ListAPIView):
    """The project's tasks, newest first, for runners picking up work."""

    required_scopes = ["task:read"]
    http_method_names = ["get", "head", "options"]
    serializer_class = TaskListItemSerializer
    pagination_class = TaskPagination

    def get_queryset(self):
        project = self.get_project()  # 404 before any 400: a bad filter says nothing about a hidden project
        status = self.request.query_params.get("status")
        if status is not None and status not in _STATUSES:
            raise TaskAPIError(
                400, f"Unknown status {status!r}; filter by one of: {', '.join(_STATUSES)}.", "invalid_status_filter"
            )
        return services.project_tasks(project, status=status)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return services.attach_latest_runs(list(page)) if page is not None else None

    @extend_schema(
        operation_id="project_tasks_list",
        tags=["tasks"],
        summary="List a project's tasks",
        description=(
            "Newest first, paginated with `limit` (at most 100, default 20) and `offset`. "
            "`status` keeps only tasks whose latest run has that status. "
            "Personal API keys need scope `task:read`, `task:write` or `*`."
        ),
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=_STATUSES,
                description="Only tasks whose latest run has this status.",
            ),
        ],
        responses={
            200: TaskListItemSerializer(many=True),  # wrapped in the pagination envelope
            400: OpenApiResponse(TaskErrorSerializer, description="Unknown `status` filter, or a bad `limit` or `offset`."),
            403: OpenApiResponse(description="The key lacks scope `task:read`."),
            **_AUTH_RESPONSES,
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class TaskDetailView(ProjectScopedAPIView):
    """One task with every run and the follow-ups of each run."""

    required_scopes = ["task:read"]
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="project_tasks_retrieve",
        tags=["tasks"],
        summary="A task with its runs and their follow-ups",
        description=(
            "Runs are oldest first; a run started by a follow-up after the previous run finished has "
            "`resume_from` set to that run. Personal API keys need scope `task:read`, `task:write` or `*`."
        ),
        responses={
            200: TaskDetailSerializer,
            403: OpenApiResponse(description="The key lacks scope `task:read`."),
            **_AUTH_RESPONSES,
        },
    )
    def get(self, request: Request, project_id: int, task_id: int) -> Response:
        project = self.get_project()
        task = services.task_with_history(Task.objects.filter(project=project), task_id)
        if task is None:
            raise Http404("Task not found.")
        return Response(TaskDetailSerializer(task).data)


class _RequiredBodySchema(AutoSchema):
    """drf-spectacular marks every PATCH body optional; this one must carry `status`."""

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, _ = super()._get_request_for_media_type(serializer, direction)
        return schema, True


class TaskRunStatusView(ProjectScopedAPIView):
    """A runner reports a run's progress."""

    schema = _RequiredBodySchema()
    required_scopes = ["task:write"]
    http_method_names = ["patch", "options"]
    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="project_task_runs_partial_update",
        tags=["tasks"],
        summary="Report a run's status",
        description=(
            "Allowed: queued -> in_progress, cancelled or failed; in_progress -> completed, failed or "
            "cancelled. A finished run (completed, failed, cancelled, quota_limited) never changes: the answer "
            "is 409, and so is a move the current status does not allow (e.g. two runners both starting one "
            "queued run: exactly one succeeds). `quota_limited` is never reported: the server sets it when the "
            "organization's AI credits run out. Runners working a run to the end use the task_runs endpoints "
            "(claim, heartbeat, progress, finish). Personal API keys need scope `task:write` or `*`."
        ),
        # A plain schema, not the serializer: drf-spectacular makes every PATCH body field
        # optional, but `status` is required here.
        request={"application/json": _RUN_STATUS_REQUEST_SCHEMA},
        responses={
            200: TaskRunSerializer,
            400: OpenApiResponse(TaskErrorSerializer, description="Missing or unknown `status`, an unknown field, or a malformed body."),
            403: OpenApiResponse(description="The key lacks scope `task:write`."),
            409: OpenApiResponse(TaskErrorSerializer, description="The run's current status does not allow it."),
            **_AUTH_RESPONSES,
        },
        examples=[OpenApiExample("Start a run", value={"status": "in_progress"}, request_only=True)],
    )
    def patch(self, request: Request, project_id: int, task_id: int, run_id: int) -> Response:
        project = self.get_project()
        run = TaskRun.objects.filter(pk=run_id, task_id=task_id, task__project=project).first()
        if run is None:
            raise Http404("Run not found.")
        unknown = sorted(set(request.data) - set(_RUN_STATUS_REQUEST_SCHEMA["properties"])) if isinstance(request.data, dict) else []
        if unknown:
            raise TaskAPIError(
                400, f"Unknown field(s) {', '.join(map(repr, unknown))}; the body is {{\"status\": ...}} only.", "unknown_field"
            )
        body = RunStatusUpdateSerializer(data=request.data)
        if not body.is_valid():
            raise TaskAPIError(400, _first_error(body.errors), "invalid_status" if "status" in body.errors else "invalid_request")
        try:
            run = services.update_run_status(run, body.validated_data["status"])
        except services.RunStatusError as exc:
            raise _as_api_error(exc) from exc
        return Response(TaskRunSerializer(run).data)


def _first_error(errors: dict) -> str:
    field, messages = next(iter(errors.items()))
    message = str(messages[0] if isinstance(messages, list) and messages else messages)  # drop ErrorDetail's own code
    return message if field == "non_field_errors" else f"{field}: {message}"
