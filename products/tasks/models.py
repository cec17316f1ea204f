"""Coding tasks, their runs and the follow-up messages appended to a run.

A `Task` is what a Slack mention becomes. Work on it happens in `TaskRun`s: a run
that has reached a terminal status is never reopened; a follow-up that arrives
afterwards starts a new run that `resume_from`s it, so the runner can pick up the
previous run's context.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class Task(models.Model):
    # By "app.Model" reference: tasks imports accounts only through its facade.
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    repository = models.CharField(max_length=200, blank=True, help_text="owner/name, or blank when no repository is needed")
    origin_product = models.CharField(max_length=50, help_text='Where the task came from, e.g. "slack"')
    # Set by callers that may retry (the Slack workflow uses its workflow id), so a retry
    # finds the task it already created instead of making a second one.
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class TaskRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    resume_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resumed_by",
        help_text="The finished run this run continues from",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"run #{self.pk} of task #{self.task_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES


class TaskFollowUp(models.Model):
    """A message appended to a run after the task was created (e.g. a later @mention in the thread)."""

    run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="followups")
    text = models.TextField()
    author_slack_user_id = models.CharField(max_length=50, blank=True)
    author_name = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"follow-up #{self.pk} on run #{self.run_id}"
