"""A project's Slack workspace connection, and which Slack thread belongs to which task."""
from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from django.views.decorators.debug import sensitive_variables

from .crypto import decrypt_json, encrypt_json


def default_config() -> dict[str, Any]:
    return {"repositories": [], "default_repository": None, "alerts_channel": None}


class Integration(models.Model):
    """A project's installation of the Slack bot in one workspace.

    `config` is plain JSON (repositories as "owner/name", an optional default repository,
    an optional alerts channel). `sensitive_config` holds the bot token encrypted with
    Fernet; read and write it only through `bot_token` / `set_bot_token`.
    """

    class Kind(models.TextChoices):
        SLACK = "slack", "Slack"

    # Other products' models by "app.Model" reference: slack_app imports them only through their facades.
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SLACK)
    integration_id = models.CharField(max_length=50, help_text="The Slack workspace (team) id, e.g. T0123ABCD")
    config = models.JSONField(default=default_config, blank=True)
    sensitive_config = models.TextField(blank=True, default="", editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "integration_id"], name="unique_integration_per_project")
        ]
        indexes = [models.Index(fields=["kind", "integration_id"], name="integration_kind_team_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.integration_id} for project #{self.project_id}"

    def __repr__(self) -> str:  # never the secret
        return f"<Integration #{self.pk} {self.kind} {self.integration_id}>"

    # --- the secret -----------------------------------------------------------------

    @property
    @sensitive_variables()
    def bot_token(self) -> str:
        return decrypt_json(self.sensitive_config).get("bot_token", "")

    @sensitive_variables("token", "secrets")
    def set_bot_token(self, token: str) -> None:
        """Encrypt `token` into `sensitive_config` (call save() afterwards)."""
        secrets = decrypt_json(self.sensitive_config) if self.sensitive_config else {}
        secrets["bot_token"] = token
        self.sensitive_config = encrypt_json(secrets)

    @property
    def has_bot_token(self) -> bool:
        return bool(self.sensitive_config)

    # --- config -----------------------------------------------------------------------

    @property
    def repositories(self) -> list[str]:
        return [r for r in (self.config or {}).get("repositories") or [] if isinstance(r, str)]

    @property
    def default_repository(self) -> str | None:
        return (self.config or {}).get("default_repository") or None

    @property
    def alerts_channel(self) -> str | None:
        return (self.config or {}).get("alerts_channel") or None


class SlackThreadTaskMapping(models.Model):
    """Ties a Slack thread to the task it started, so later mentions there become follow-ups."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="slack_thread_mappings")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="thread_mappings")
    slack_workspace_id = models.CharField(max_length=50)
    channel = models.CharField(max_length=50)
    thread_ts = models.CharField(max_length=50)
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="slack_threads")
    task_run = models.ForeignKey("tasks.TaskRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    mentioning_slack_user_id = models.CharField(max_length=50, blank=True)
    workflow_id = models.CharField(max_length=255, blank=True)
    # ts of the "On it" reply; empty until it has been posted (so a retry never posts twice).
    reply_ts = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "channel", "thread_ts"], name="unique_slack_thread_mapping")
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.thread_ts} -> task #{self.task_id}"


class RepoPicker(models.Model):
    """The repository picker a mention workflow posted, and the choices it offered.

    Written (in its own commit) before the picker is posted, so a click can always be
    checked against what was really offered: a signed click naming anything else is
    refused without touching the message. `message_ts` is filled in once Slack answers.
    """

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="repo_pickers")
    workflow_id = models.CharField(max_length=255, unique=True)
    channel = models.CharField(max_length=50)
    thread_ts = models.CharField(max_length=50)
    message_ts = models.CharField(max_length=50, blank=True, default="")
    options = models.JSONField(default=list, help_text='The "owner/name" repositories offered, in button order')
    answered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"picker for {self.workflow_id}"

    def offers(self, repository: str) -> bool:
        return repository in (self.options or [])


class BotMessage(models.Model):
    """A bot message posted (or being posted) for one step of one Slack event: the "post once" ledger.

    `key` is the event's workflow id and `step` the message's step ("quota_denial",
    "try_again", "on_it", ...). Unique on both, so a redelivery or a retried activity
    that finds its row does not post again. `ts` is empty while the post is under way.
    """

    key = models.CharField(max_length=255)
    step = models.CharField(max_length=50)
    channel = models.CharField(max_length=50)
    thread_ts = models.CharField(max_length=50, blank=True, default="")
    ts = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["key", "step"], name="unique_bot_message_per_step")]

    def __str__(self) -> str:
        return f"{self.step} for {self.key}"
