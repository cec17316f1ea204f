"""Admin for Slack integrations: the bot token can be set or replaced, never read back."""
from __future__ import annotations

import re

from django import forms
from django.contrib import admin

from .models import BotMessage, Integration, RepoPicker, SlackThreadTaskMapping

REPOSITORY_RE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class IntegrationAdminForm(forms.ModelForm):
    bot_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored token; it is encrypted at rest and never shown.",
    )

    class Meta:
        model = Integration
        fields = ("project", "kind", "integration_id", "config", "status", "status_reason")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Left out of a form post, the status stays as it is (Slack's events and calls set it).
        self.fields["status"].required = False

    def clean_status(self) -> str:
        return self.cleaned_data.get("status") or (self.instance.status if self.instance.pk else Integration.Status.ACTIVE)

    def clean_config(self) -> dict:
        """Refuse a config the bot could not route with (clear message, nothing saved)."""
        config = self.cleaned_data.get("config") or {}
        if not isinstance(config, dict):
            raise forms.ValidationError('Config must be a JSON object like {"repositories": ["owner/name"]}.')
        repositories = config.get("repositories") or []
        if not isinstance(repositories, list) or not all(isinstance(r, str) and REPOSITORY_RE.fullmatch(r) for r in repositories):
            raise forms.ValidationError('"repositories" must be a list of "owner/name" strings.')
        default = config.get("default_repository")
        if default is not None and default not in repositories:
            raise forms.ValidationError('"default_repository" must be one of "repositories" (or null).')
        channel = config.get("alerts_channel")
        if channel is not None and not isinstance(channel, str):
            raise forms.ValidationError('"alerts_channel" must be a channel id string (or null).')
        return {**config, "repositories": repositories, "default_repository": default, "alerts_channel": channel}

    def save(self, commit: bool = True) -> Integration:
        integration = super().save(commit=False)
        token = self.cleaned_data.get("bot_token")
        if token:
            integration.set_bot_token(token)
            if "status" not in self.changed_data:
                # A fresh token mends a broken or disabled integration, as a reinstall does.
                integration.status, integration.status_reason = Integration.Status.ACTIVE, ""
        if commit:
            integration.save()
        return integration


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationAdminForm
    list_display = ("id", "kind", "integration_id", "team_name", "project", "status", "token_set", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("integration_id", "team_name", "project__name")
    raw_id_fields = ("project",)
    fields = (
        "project", "kind", "integration_id", "config", "bot_token", "token_set", "status", "status_reason",
        "status_changed_at", "team_name", "bot_user_id", "scopes", "installed_by", "installed_at", "token_expires_at",
    )
    # Status: "broken" / "disabled" come from Slack (a refused token, an uninstall); setting it
    # back to active by hand is allowed, e.g. after a new token was pasted.
    readonly_fields = ("token_set", "status_changed_at", "team_name", "bot_user_id", "scopes", "installed_by", "installed_at", "token_expires_at")

    @admin.display(boolean=True, description="Bot token set")
    def token_set(self, obj: Integration) -> bool:
        return obj.has_bot_token


@admin.register(SlackThreadTaskMapping)
class SlackThreadTaskMappingAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "thread_ts", "task", "integration", "mentioning_slack_user_id", "created_at")
    search_fields = ("channel", "thread_ts", "workflow_id", "mentioning_slack_user_id")
    raw_id_fields = ("project", "integration", "task", "task_run")
    readonly_fields = ("workflow_id", "reply_ts", "created_at", "updated_at")


@admin.register(RepoPicker)
class RepoPickerAdmin(admin.ModelAdmin):
    list_display = ("id", "workflow_id", "channel", "message_ts", "answered_at", "created_at")
    search_fields = ("workflow_id", "channel")
    raw_id_fields = ("integration",)
    readonly_fields = ("workflow_id", "channel", "thread_ts", "message_ts", "options", "answered_at", "created_at")


@admin.register(BotMessage)
class BotMessageAdmin(admin.ModelAdmin):
    """The "post once" ledger: which bot message went out for which event step (read-only)."""

    list_display = ("id", "key", "step", "channel", "ts", "created_at")
    list_filter = ("step",)
    search_fields = ("key", "channel")
    readonly_fields = ("key", "step", "channel", "thread_ts", "ts", "created_at")


# The mention inbox (issue 10): its admin lives in its own module.
from . import inbox_admin  # noqa: E402,F401
