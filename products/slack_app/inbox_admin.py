"""Admin for the mention inbox: operators see the backlog (pending count, age of the oldest) above the rows."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .inbox import backlog
from .inbox_models import MentionInbox


@admin.register(MentionInbox)
class MentionInboxAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the webhook and settled by the relay, never by hand."""

    change_list_template = "admin/slack_app/mentioninbox/change_list.html"
    list_display = ("id", "workflow_id", "action", "state", "result", "attempts", "received_at", "processed_at")
    list_filter = ("state", "action", "result")
    search_fields = ("workflow_id", "event_id", "slack_team_id", "channel")
    ordering = ("-id",)
    readonly_fields = [f.name for f in MentionInbox._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MentionInbox | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        return super().changelist_view(request, extra_context={**(extra_context or {}), "backlog": backlog()})
