"""A project's Slack workspace connection, and which Slack thread belongs to which task."""
from __future__ import annotations

from typing import Any

from django.conf import settings
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

    class Status(models.TextChoices):
        # Mentions are acted on; the Home tab is published.
        ACTIVE = "active", "active"
        # The app was uninstalled or its bot token revoked (Slack told us): mentions are ignored until a reinstall.
        DISABLED = "disabled", "disabled (uninstalled or revoked)"
        # A Slack call failed with invalid_auth / token_revoked / account_inactive: an admin must reinstall.
        BROKEN = "broken", "broken (Slack refuses the token)"

    # Other products' models by "app.Model" reference: slack_app imports them only through their facades.
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SLACK)
    integration_id = models.CharField(max_length=50, help_text="The Slack workspace (team) id, e.g. T0123ABCD")
    config = models.JSONField(default=default_config, blank=True)
    sensitive_config = models.TextField(blank=True, default="", editable=False)
    # Filled by "Add to Slack" (oauth.py); empty for workspaces connected by hand.
    team_name = models.CharField(max_length=255, blank=True, default="")
    bot_user_id = models.CharField(max_length=50, blank=True, default="")
    scopes = models.JSONField(default=list, blank=True, help_text="The bot scopes Slack granted at the last install")
    installed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    installed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Token rotation (only when the Slack app has it on): when the access token expires.
    # The refresh token itself is encrypted in `sensitive_config`.
    token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=255, blank=True, default="", help_text="Why it is disabled or broken")
    status_changed_at = models.DateTimeField(null=True, blank=True)
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

    @property
    @sensitive_variables()
    def refresh_token(self) -> str:
        return decrypt_json(self.sensitive_config).get("refresh_token", "")

    @sensitive_variables("token", "refresh_token", "secrets")
    def set_tokens(self, token: str, refresh_token: str | None, expires_at=None) -> None:
        """Store the bot token and, with token rotation, its refresh token and expiry (call save() afterwards)."""
        secrets = decrypt_json(self.sensitive_config) if self.sensitive_config else {}
        secrets["bot_token"] = token
        if refresh_token:
            secrets["refresh_token"] = refresh_token
        else:
            secrets.pop("refresh_token", None)
        self.sensitive_config = encrypt_json(secrets)
        self.token_expires_at = expires_at if refresh_token else None

    @property
    def enabled(self) -> bool:
        """Whether mentions from this workspace are acted on (broken ones are tried: a reinstall mends them)."""
        return self.status != self.Status.DISABLED

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


class OAuthState(models.Model):
    """A single-use, expiring OAuth `state` (slack_sdk's `OAuthStateStore`, kept in the database: see oauth_state.py).

    `binding` ties it to whoever started the flow: "user:<id>" for "Add to Slack",
    "session:<sha256 of a nonce in the browser's session>" for "Sign in with Slack".
    """

    class Purpose(models.TextChoices):
        INSTALL = "install", "Add to Slack"
        SIGNIN = "signin", "Sign in with Slack"

    state = models.CharField(max_length=64, unique=True)
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    binding = models.CharField(max_length=100)
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    next_url = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="oauth_state_expires_idx")]

    def __str__(self) -> str:
        return f"{self.purpose} state #{self.pk}"


class SlackIdentity(models.Model):
    """A Slack member who signed in with Slack, and the user they sign in as."""

    slack_team_id = models.CharField(max_length=50)
    slack_user_id = models.CharField(max_length=50)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_identities")
    email = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    last_signed_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["slack_team_id", "slack_user_id"], name="unique_slack_identity")]

    def __str__(self) -> str:
        return f"{self.slack_user_id}@{self.slack_team_id} -> {self.user}"


class HomeTabViewer(models.Model):
    """A member who opened the app's Home tab: their tab is published again after each quota recomputation."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="home_tab_viewers")
    slack_user_id = models.CharField(max_length=50)
    opened_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["integration", "slack_user_id"], name="unique_home_tab_viewer")]

    def __str__(self) -> str:
        return f"Home tab of {self.slack_user_id} in {self.integration.integration_id}"


# The webhook -> Temporal inbox (issue 10) lives in its own module; imported here so Django finds it.
from .inbox_models import MentionInbox  # noqa: E402,F401
