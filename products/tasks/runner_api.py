"""The external runners' REST protocol: claim a queued run, heartbeat, report progress, read
follow-ups, finish.

    POST /api/projects/{project_id}/task_runs/claim/                    {"runner"}                 -> 200 run | 204
    POST /api/projects/{project_id}/task_runs/{run_id}/heartbeat/       {"runner"}
    POST /api/projects/{project_id}/task_runs/{run_id}/progress/        {"runner", "line"}
    GET  /api/projects/{project_id}/task_runs/{run_id}/followups/?after=<cursor>
    POST /api/projects/{project_id}/task_runs/{run_id}/finish/          {"runner", "status", "summary", "pr_url", "error"}

Only runs of the project whose backend is "external" are handed out. A runner names itself
when it claims and sends that name in every later call; another name is a 409. Views
validate the body, make one call into `runs`, and answer; `runs.RunError`s become HTTP
errors in `_as_api_error`. After a claim, a progress line or a finish commits, the run's
workflow is told (`runs.notify_workflow`) so the Slack thread hears of it at once.
"""
from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from posthog_app.parsers import StrictJSONParser
from products.accounts.facade import ProjectScopedAPIView

from . import runs
from .api import TaskAPIError, _first_error
from .models import TaskFollowUp, TaskRun
from .serializers import (
    ClaimedRunSerializer,
    ClaimRequestSerializer,
    FinishRequestSerializer,
    FollowUpsPageSerializer,
    HeartbeatRequestSerializer,
    ProgressRequestSerializer,
    RunnerRunSerializer,
    TaskErrorSerializer,
)

FOLLOWUPS_PAGE = 100

_COMMON_RESPONSES = {
    401: OpenApiResponse(description="No credentials, or an invalid key."),
    403: OpenApiResponse(description="The key lacks scope `task:write`."),
    404: OpenApiResponse(description="No such project or run, or not one the caller can see."),
}
_BAD_BODY = OpenApiResponse(
    TaskErrorSerializer, description="A missing or malformed field, an unknown field, or a body that is not a JSON object."
)
_NOT_YOURS = OpenApiResponse(
    TaskErrorSerializer,
    description=(
        "`not_claimant`: another runner (or none) claimed the run; `run_finished`: the run has ended (e.g. cancelled), "
        "stop working on it; `run_lost`: the run was failed because no heartbeat arrived in time."
    ),
)


def _as_api_error(exc: runs.RunError) -> TaskAPIError:
    return TaskAPIError(exc.http_status, exc.message, exc.code)


class _RunnerView(ProjectScopedAPIView):
    """Base: `task:write` keys, strict JSON bodies, unknown fields refused."""

    required_scopes = ["task:write"]
    parser_classes = [StrictJSONParser]

    def body(self, serializer_class: type[serializers.Serializer]) -> dict:
        """Return the validated body, or raise a 400 naming what is wrong (an unknown field included)."""
        data = self.request.data
        if not isinstance(data, dict):
            raise TaskAPIError(400, "The body must be a JSON object.", "invalid_request")
        serializer = serializer_class(data=data)
        unknown = sorted(set(data) - set(serializer.fields))
        if unknown:
            raise TaskAPIError(
                400, f"Unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(serializer.fields)}.",
                "unknown_field",
            )
        if not serializer.is_valid():
            field = next(iter(serializer.errors))
            raise TaskAPIError(400, _first_error(serializer.errors), f"invalid_{field}" if field != "non_field_errors" else "invalid_request")
        return serializer.validated_data

    def check_run(self, project) -> None:
        """404 for a run that is not the project's, before any 400 about the body (which says nothing about it)."""
        if not TaskRun.objects.filter(pk=self.kwargs["run_id"], task__project=project).exists():
            raise Http404("Run not found.")


class ClaimRunView(_RunnerView):
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="project_task_runs_claim",
        tags=["task runners"],
        summary="Claim the project's oldest queued run",
        description=(
            "Hands the oldest queued run of the project whose agent backend is `external` to the calling runner: "
            "the run becomes in_progress, claimed by `runner`, with a heartbeat now. Two runners never get the same "
            "run (`SELECT ... FOR UPDATE SKIP LOCKED`). 204 when nothing is queued: ask again later. "
            "Afterwards send a heartbeat or a progress line at least every `heartbeat_timeout_seconds`, or the run "
            "is failed as lost. Personal API keys need scope `task:write` or `*`."
        ),
        request=ClaimRequestSerializer,
        responses={
            200: ClaimedRunSerializer,
            204: OpenApiResponse(description="No queued external run in the project."),
            400: _BAD_BODY,
            **_COMMON_RESPONSES,
        },
        examples=[OpenApiExample("Claim", value={"runner": "sandbox-7"}, request_only=True)],
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = self.get_project()
        body = self.body(ClaimRequestSerializer)
        try:
            claimed = runs.claim_next_run(project.pk, body["runner"])
        except runs.RunError as exc:
            raise _as_api_error(exc) from exc
        if claimed is None:
            return Response(status=204)
        runs.notify_workflow(claimed.run.pk)
        return Response(ClaimedRunSerializer(claimed).data)


class RunHeartbeatView(_RunnerView):
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="project_task_runs_heartbeat",
        tags=["task runners"],
        summary="Say the runner is still working the run",
        description="Only the runner that claimed the run; others get 409. A progress line counts as a heartbeat too.",
        request=HeartbeatRequestSerializer,
        responses={200: RunnerRunSerializer, 400: _BAD_BODY, 409: _NOT_YOURS, **_COMMON_RESPONSES},
    )
    def post(self, request: Request, project_id: int, run_id: int) -> Response:
        project = self.get_project()
        self.check_run(project)
        body = self.body(HeartbeatRequestSerializer)
        try:
            run = runs.runner_heartbeat(project.pk, run_id, body["runner"])
        except runs.RunError as exc:
            raise _as_api_error(exc) from exc
        return Response(RunnerRunSerializer(run).data)


class RunProgressView(_RunnerView):
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="project_task_runs_progress",
        tags=["task runners"],
        summary="Report a progress line",
        description=(
            "Sets the run's status line (shown in the Slack thread's status message and on the task page) and "
            "appends it to the run's history; whitespace is collapsed and the line cut to 200 characters. The same "
            "line twice in a row is kept once. Counts as a heartbeat. Only the runner that claimed the run."
        ),
        request=ProgressRequestSerializer,
        responses={200: RunnerRunSerializer, 400: _BAD_BODY, 409: _NOT_YOURS, **_COMMON_RESPONSES},
        examples=[OpenApiExample("Progress", value={"runner": "sandbox-7", "line": "Running the test suite"}, request_only=True)],
    )
    def post(self, request: Request, project_id: int, run_id: int) -> Response:
        project = self.get_project()
        self.check_run(project)
        body = self.body(ProgressRequestSerializer)
        try:
            run = runs.runner_progress(project.pk, run_id, body["runner"], body["line"])
        except runs.RunError as exc:
            raise _as_api_error(exc) from exc
        runs.notify_workflow(run.pk)
        return Response(RunnerRunSerializer(run).data)


class RunFollowUpsView(_RunnerView):
    required_scopes = ["task:read"]
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="project_task_runs_followups",
        tags=["task runners"],
        summary="Follow-ups to the run after a cursor",
        description=(
            "Messages people added in the Slack thread while the run works, oldest first, at most "
            f"{FOLLOWUPS_PAGE} per call. Pass the `cursor` of the previous answer (or the claim's "
            "`followups_cursor`) as `after`. Personal API keys need scope `task:read`, `task:write` or `*`."
        ),
        parameters=[
            OpenApiParameter(
                "after", OpenApiTypes.INT, OpenApiParameter.QUERY,
                description="Only follow-ups with a larger id; 0 or absent for all of them.",
            ),
        ],
        responses={
            200: FollowUpsPageSerializer,
            400: OpenApiResponse(TaskErrorSerializer, description="`after` is not a whole number."),
            401: _COMMON_RESPONSES[401],
            403: OpenApiResponse(description="The key lacks scope `task:read`."),
            404: _COMMON_RESPONSES[404],
        },
    )
    def get(self, request: Request, project_id: int, run_id: int) -> Response:
        project = self.get_project()
        self.check_run(project)
        raw = request.query_params.get("after", "0")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
            raise TaskAPIError(400, f"`after` must be a whole number (a follow-up id), not {raw!r}.", "invalid_cursor")
        after = int(raw)
        rows = list(TaskFollowUp.objects.filter(run_id=run_id, pk__gt=after).order_by("pk")[: FOLLOWUPS_PAGE + 1])
        page = rows[:FOLLOWUPS_PAGE]
        return Response(FollowUpsPageSerializer(
            {"followups": page, "cursor": page[-1].pk if page else after, "has_more": len(rows) > FOLLOWUPS_PAGE}
        ).data)


class RunFinishView(_RunnerView):
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="project_task_runs_finish",
        tags=["task runners"],
        summary="Finish the run with a result or an error",
        description=(
            "completed (a `summary`, optionally a `pr_url`) or failed (an `error`). Idempotent: repeating a finish "
            "with the same content answers 200 and changes nothing, so a runner may retry it freely. A run that "
            "already finished differently is a 409 `finish_conflict`; one failed because its heartbeats stopped, "
            "a 409 `run_lost`. Only the runner that claimed the run."
        ),
        request=FinishRequestSerializer,
        responses={
            200: RunnerRunSerializer,
            400: OpenApiResponse(TaskErrorSerializer, description="Bad status, a `pr_url` that is not an http(s) URL, "
                                 "a failed run without `error`, an unknown field."),
            409: OpenApiResponse(TaskErrorSerializer, description="`not_claimant`, `finish_conflict` or `run_lost`."),
            **_COMMON_RESPONSES,
        },
        examples=[
            OpenApiExample("Completed with a pull request", request_only=True, value={
                "runner": "sandbox-7", "status": "completed", "summary": "Fixed the race in the login test.",
                "pr_url": "https://github.com/acme/web/pull/42",
            }),
            OpenApiExample("Failed", request_only=True, value={
                "runner": "sandbox-7", "status": "failed", "error": "The repository could not be cloned.",
            }),
        ],
    )
    def post(self, request: Request, project_id: int, run_id: int) -> Response:
        project = self.get_project()
        self.check_run(project)
        body = self.body(FinishRequestSerializer)
        try:
            run, _changed = runs.runner_finish(
                project.pk, run_id, body["runner"], status=body["status"], summary=body["summary"],
                pr_url=body["pr_url"], error=body["error"],
            )
        except runs.RunError as exc:
            raise _as_api_error(exc) from exc
        runs.notify_workflow(run.pk)  # on a retried finish too: the first notice may have been lost
        return Response(RunnerRunSerializer(run).data)
