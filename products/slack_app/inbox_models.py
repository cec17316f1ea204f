"""The durable inbox between the Slack webhook and Temporal: one row per accepted (or refused) Slack event.

The webhook writes a row and answers 200; the relay in the worker process
(`relay.py`) starts the workflow or posts the recorded reply, then marks the row.
So Temporal's state never decides the webhook's answer, and a Temporal outage longer
than Slack's retry schedule loses nothing. The row is unique on workspace + event
id: Slack's redeliveries are no-ops.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class MentionInbox(models.Model):
    """One Slack `app_mention` event the webhook decided on, waiting for (or done by) the relay.

    Table `slack_app_mentioninbox` (a contract: operators query it). `action` is what the
    relay must do; `state` moves pending -> done (or failed, after
    `SLACK_INBOX_MAX_ATTEMPTS` errors that are not an outage). `claimed_until` is the
    lease of the relay working on the row: another relay takes it only once it has
    expired (the relay died), which the workflow id policies make harmless.
    """

    class Action(models.TextChoices):
        START = "start", "Start the mention workflow"
        DENY_OVER_QUOTA = "deny_over_quota", "Post the quota denial"
        TRY_AGAIN = "try_again", "Post 'try again shortly' (quota unknown, mode closed)"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    slack_team_id = models.CharField(max_length=32)
    event_id = models.CharField(max_length=64)
    integration = models.ForeignKey("slack_app.Integration", on_delete=models.CASCADE, related_name="inbox")
    action = models.CharField(max_length=20, choices=Action.choices)
    workflow_id = models.CharField(max_length=255)
    event = models.JSONField(help_text="The app_mention event as Slack sent it (the workflow's input)")
    channel = models.CharField(max_length=50)
    thread_ts = models.CharField(max_length=50)
    user = models.CharField(max_length=50, blank=True, default="")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    received_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # What the relay did: "started", "already_started" (a redelivered or re-relayed start), "posted", "not_posted".
    result = models.CharField(max_length=20, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "slack_app_mentioninbox"
        ordering = ["id"]
        verbose_name = "mention inbox row"
        verbose_name_plural = "mention inbox"
        constraints = [
            models.UniqueConstraint(fields=["slack_team_id", "event_id"], name="unique_inbox_event_per_workspace")
        ]
        indexes = [
            # The relay's scan: pending rows, oldest first (a partial index stays as small as the backlog).
            models.Index(fields=["id"], name="inbox_pending_idx", condition=models.Q(state="pending")),
            # The prune: processed rows by age.
            models.Index(fields=["processed_at"], name="inbox_processed_idx", condition=~models.Q(state="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.workflow_id} ({self.state})"
