"""Request and response shapes of the task runner API (also its OpenAPI schema)."""
from __future__ import annotations

from rest_framework import serializers

from .models import Task, TaskFollowUp, TaskRun
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


class TaskRunWithFollowUpsSerializer(TaskRunSerializer):
    followups = TaskFollowUpSerializer(many=True, read_only=True, help_text="Messages appended to this run, oldest first.")

    class Meta(TaskRunSerializer.Meta):
        fields = TaskRunSerializer.Meta.fields + ["followups"]
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
