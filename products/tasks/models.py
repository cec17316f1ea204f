"""Coding tasks, their runs, the follow-up messages appended to a run, and each run's history.

A `Task` is what a Slack mention becomes. Work on it happens in `TaskRun`s: a run
that has reached a terminal status is never reopened; a follow-up that arrives
afterwards starts a new run that `resume_from`s it, so the runner can pick up the
previous run's context.

A run is worked either by the built-in agent or by an external runner process that
claims it over the REST API; which one is fixed when the run is created, from the
project's `AgentSettings`. Every status change and progress line of a run is kept in
`TaskRunEvent` (the task page shows it).
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


class AgentBackend(models.TextChoices):
    BUILTIN = "builtin", "built-in agent (through the LLM gateway)"
    EXTERNAL = "external", "external runners (REST API)"


class AgentSettings(models.Model):
    """Which agent backend works a project's new runs; a project without a row uses the built-in agent."""

    # By "app.Model" reference: tasks imports accounts only through its facade.
    project = models.OneToOneField("accounts.Project", on_delete=models.CASCADE, related_name="agent_settings")
    backend = models.CharField(
        max_length=20, choices=AgentBackend.choices, default=AgentBackend.BUILTIN,
        help_text="Runs created from now on use this backend; runs that exist keep theirs.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "agent settings"
        verbose_name_plural = "agent settings"

    def __str__(self) -> str:
        return f"agent backend of project #{self.project_id}: {self.backend}"


class TaskRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        # The organization ran out of AI credits while the run was working (the gateway's 429).
        QUOTA_LIMITED = "quota_limited", "quota limited"

    TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.QUOTA_LIMITED})

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    resume_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resumed_by",
        help_text="The finished run this run continues from",
    )
    # Decided once, when the run is created, from the project's AgentSettings: changing the
    # setting later never moves a run that is already queued or working to the other backend.
    backend = models.CharField(max_length=20, choices=AgentBackend.choices, default=AgentBackend.BUILTIN)
    claimed_by = models.CharField(max_length=100, blank=True, help_text="The external runner working the run")
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="The runner's last sign of life")
    progress = models.CharField(max_length=200, blank=True, help_text="The latest progress line")
    summary = models.TextField(blank=True)
    pr_url = models.URLField(max_length=2000, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=50, blank=True, help_text="runner_lost, runner_error, agent_error, ...")
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The runners' claim: a project's oldest queued external run.
            models.Index(
                fields=["created_at", "id"],
                condition=models.Q(status="queued", backend="external"),
                name="taskrun_external_queue",
            ),
            # The stale-heartbeat sweep: external runs being worked.
            models.Index(
                fields=["heartbeat_at"],
                condition=models.Q(status="in_progress", backend="external"),
                name="taskrun_external_working",
            ),
        ]

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


class TaskRunEvent(models.Model):
    """One entry of a run's history: a status change, a progress line, its result or its error."""

    class Kind(models.TextChoices):
        STATUS = "status", "status"
        PROGRESS = "progress", "progress"
        RESULT = "result", "result"
        ERROR = "error", "error"

    run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["run", "created_at", "id"], name="taskrunevent_run_time")]

    def __str__(self) -> str:
        return f"{self.kind} of run #{self.run_id}: {self.text[:50]}"
