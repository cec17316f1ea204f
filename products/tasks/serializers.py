"""Request and response shapes of the task runner API (also its OpenAPI schema)."""
from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from .models import Task, TaskFollowUp, TaskRun
from .runs import (
    ERROR_MAX_CHARS,
    PR_URL_MAX_CHARS,
    RUNNER_FINISH_STATUSES,
    RUNNER_NAME_MAX_CHARS,
    SUMMARY_MAX_CHARS,
)
from .services import REPORTABLE_STATUSES, task_page_url


class TaskRunSerializer(serializers.ModelSerializer):
    resume_from = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Id of the finished run this run continues from, or null."
    )

    class Meta:
        model = TaskRun
        fields = ["id", "status", "resume_from", "created_at", "updated_at"]
        read_only_fields = fields


class TaskFollowUpSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskFollowUp
        fields = ["id", "text", "author_slack_user_id", "author_name", "created_at"]
        read_only_fields = fields


# The result fields of a run, as every answer shows them. `pr_url` is a plain string in the
# schema: it is "" until a runner reports one, which `format: uri` would not allow.
_RESULT_FIELDS = ["backend", "claimed_by", "progress", "summary", "pr_url", "error", "error_kind", "finished_at"]


class TaskRunWithFollowUpsSerializer(TaskRunSerializer):
    followups = TaskFollowUpSerializer(many=True, read_only=True, help_text="Messages appended to this run, oldest first.")
    pr_url = serializers.CharField(read_only=True, help_text='The pull request the run opened, or "".')

    class Meta(TaskRunSerializer.Meta):
        fields = TaskRunSerializer.Meta.fields + _RESULT_FIELDS + ["followups"]
        read_only_fields = fields


class _TaskBaseSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="The task's page (the link posted to Slack).")

    class Meta:
        model = Task
        fields = ["id", "title", "description", "repository", "origin_product", "created_at", "url"]
        read_only_fields = fields

    def get_url(self, task: Task) -> str:
        return task_page_url(task.pk)


class TaskListItemSerializer(_TaskBaseSerializer):
    """Expects `task.latest_run` set (see `services.attach_latest_runs`)."""

    latest_run = TaskRunSerializer(read_only=True, allow_null=True, help_text="The task's most recent run.")

    class Meta(_TaskBaseSerializer.Meta):
        fields = _TaskBaseSerializer.Meta.fields + ["latest_run"]
        read_only_fields = fields


class TaskDetailSerializer(_TaskBaseSerializer):
    """Expects `task.history` set (see `services.task_with_history`)."""

    runs = TaskRunWithFollowUpsSerializer(
        source="history", many=True, read_only=True,
        help_text="Every run, oldest first; a run started by a follow-up resumes the one before it.",
    )

    class Meta(_TaskBaseSerializer.Meta):
        fields = _TaskBaseSerializer.Meta.fields + ["runs"]
        read_only_fields = fields


class RunStatusUpdateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=REPORTABLE_STATUSES,
        error_messages={
            "invalid_choice": '"{input}" is not a status a runner may report; use one of: '
            + ", ".join(REPORTABLE_STATUSES) + ".",
        },
        help_text="queued -> in_progress, cancelled or failed; in_progress -> completed, failed or cancelled.",
    )


class TaskErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong, in words.")
    code = serializers.CharField(help_text="A stable code to branch on.")


# --- The external runner protocol (POST .../task_runs/claim/ and friends) -------------------

_RUNNER_HELP = "The runner's name, as given when it claimed the run; only that runner may report on it."
# Some visible character, no control characters (one line): what `runs.check_runner_name` accepts.
_runner_name = RegexValidator(r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$", "`runner` must be one line with some visible text.")
_some_text = RegexValidator(r"\S", "`line` must contain some text.")


class _StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would take 5 or true and store "5" or "True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _runner_field(help_text: str = _RUNNER_HELP) -> serializers.CharField:
    return _StrictCharField(max_length=RUNNER_NAME_MAX_CHARS, validators=[_runner_name], help_text=help_text)


class _RunnerBodySerializer(serializers.Serializer):
    """Base of the runner protocol's request bodies: the views refuse any field not declared (400)."""

    runner = _runner_field()


class _ClosedRunnerBodies(OpenApiSerializerExtension):
    """Say in the schema what the views enforce: a runner body has no fields beyond the declared ones."""

    target_class = _RunnerBodySerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["additionalProperties"] = False
        return schema


class ClaimRequestSerializer(_RunnerBodySerializer):
    """Claim the oldest queued external run."""

    runner = _runner_field(
        "A name for the runner process (e.g. its host name); it must send the same name in every later call."
    )


class HeartbeatRequestSerializer(_RunnerBodySerializer):
    """The claiming runner is still working."""


class ProgressRequestSerializer(_RunnerBodySerializer):
    """A status line from the claiming runner."""

    line = _StrictCharField(
        max_length=10_000, trim_whitespace=False, validators=[_some_text],
        help_text="A short status line; whitespace is collapsed and it is cut to 200 characters.",
    )


class FinishRequestSerializer(_RunnerBodySerializer):
    """The claiming runner's result or error."""

    status = serializers.ChoiceField(
        choices=RUNNER_FINISH_STATUSES,
        error_messages={"invalid_choice": '"{input}" is not a way to finish; use completed or failed.'},
        help_text="completed (with a summary and/or a pull-request URL) or failed (with an error).",
    )
    summary = _StrictCharField(
        required=False, allow_blank=True, default="", max_length=SUMMARY_MAX_CHARS, trim_whitespace=False,
        help_text="What was done, posted to the Slack thread.",
    )
    pr_url = _StrictCharField(
        required=False, allow_blank=True, default="", max_length=PR_URL_MAX_CHARS, trim_whitespace=False,
        help_text="The pull request opened, an absolute http(s) URL (Slack shows a card with buttons).",
    )
    error = _StrictCharField(
        required=False, allow_blank=True, default="", max_length=ERROR_MAX_CHARS, trim_whitespace=False,
        help_text="What went wrong; required when status is failed.",
    )


class RunnerRunSerializer(serializers.ModelSerializer):
    """A run as a runner sees it after a heartbeat, a progress line or a finish."""

    task_id = serializers.IntegerField(read_only=True)
    pr_url = serializers.CharField(read_only=True, help_text='The pull request reported, or "".')

    class Meta:
        model = TaskRun
        fields = ["id", "task_id", "status", "claimed_by", "claimed_at", "heartbeat_at", "progress", "summary",
                  "pr_url", "error", "error_kind", "finished_at"]
        read_only_fields = fields


class ResumedRunSerializer(serializers.ModelSerializer):
    """The finished run a claimed run continues from: what it ended with."""

    pr_url = serializers.CharField(read_only=True)

    class Meta:
        model = TaskRun
        fields = ["id", "status", "summary", "pr_url", "error", "error_kind", "finished_at"]
        read_only_fields = fields


class RunnerFollowUpSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskFollowUp
        fields = ["id", "text", "author_name", "created_at"]
        read_only_fields = fields


class ClaimedRunSerializer(serializers.Serializer):
    """The answer to a claim; built from `runs.ClaimedRun`."""

    id = serializers.IntegerField(source="run.pk", help_text="The run's id, for every later call.")
    task_id = serializers.IntegerField(source="run.task_id")
    status = serializers.CharField(source="run.status", help_text="Always in_progress: the run is now this runner's.")
    claimed_by = serializers.CharField(source="run.claimed_by")
    claimed_at = serializers.DateTimeField(source="run.claimed_at")
    title = serializers.CharField(source="run.task.title")
    description = serializers.CharField(source="run.task.description", help_text="The task, with the Slack thread's context.")
    repository = serializers.CharField(source="run.task.repository", help_text='owner/name, or "" when none is needed.')
    task_url = serializers.SerializerMethodField(help_text="The task's page.")
    resume_from = ResumedRunSerializer(
        source="run.resume_from", allow_null=True,
        help_text="The finished run this one continues (a follow-up arrived after it ended), or null.",
    )
    followups = RunnerFollowUpSerializer(many=True, help_text="Follow-ups already on the run, oldest first.")
    followups_cursor = serializers.IntegerField(
        source="cursor", help_text="Pass as `after` to GET .../followups/ to get only later follow-ups.",
    )
    heartbeat_timeout_seconds = serializers.SerializerMethodField(
        help_text="Without a heartbeat (or progress line) for this long the run is failed as lost; beat well within it.",
    )

    def get_task_url(self, claimed) -> str:
        return task_page_url(claimed.run.task_id)

    def get_heartbeat_timeout_seconds(self, claimed) -> int:
        from .runs import heartbeat_timeout

        return int(heartbeat_timeout().total_seconds())


class FollowUpsPageSerializer(serializers.Serializer):
    followups = RunnerFollowUpSerializer(many=True, help_text="Follow-ups after the cursor, oldest first.")
    cursor = serializers.IntegerField(help_text="The last follow-up's id here (or the `after` given when none): the next `after`.")
    has_more = serializers.BooleanField(help_text="True when more follow-ups wait beyond this page: ask again at once.")
