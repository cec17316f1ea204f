"""Admin for quota limits: the read-only audit log, and the project page's quota tools.

`ProjectQuotaAdminMixin` is mixed into the accounts app's `ProjectAdmin` (one admin per
model): the project page shows each resource's state read live from Redis and the
project's recent audit rows, and the changelist gets the actions "Limit AI credits
until …" and "Lift AI-credit limit". Every change goes through `services`, which
writes Redis and the audit log together; nothing here writes either directly.
"""
from __future__ import annotations

from datetime import datetime

import redis
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from . import quota_limiting as ql
from .models import QuotaLimitChange
from .services import Actor, QuotaChangeError, check_until, clear_quota_limit, set_quota_limit

RECENT_CHANGES_SHOWN = 20
LIFT_REASON = "lifted in admin"


def _format_time(value: datetime | None) -> str:
    return "—" if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- The audit log -------------------------------------------------------------------------


class ChangeKindFilter(admin.SimpleListFilter):
    """Split the log into limits set and limits lifted (a lift has no new limited-until)."""

    title = "change"
    parameter_name = "change"

    def lookups(self, request, model_admin):
        return [("set", "limit set"), ("lifted", "limit lifted")]

    def queryset(self, request, queryset):
        if self.value() == "set":
            return queryset.filter(new_limited_until__isnull=False)
        if self.value() == "lifted":
            return queryset.filter(new_limited_until__isnull=True)
        return queryset


@admin.register(QuotaLimitChange)
class QuotaLimitChangeAdmin(admin.ModelAdmin):
    """The audit log can be read and searched, never written: rows record what happened."""

    list_display = [
        "created_at",
        "project",
        "resource",
        "action",
        "old_limited_until",
        "new_limited_until",
        "who",
        "reason",
    ]
    list_filter = ["resource", "state", ChangeKindFilter, "created_at"]
    search_fields = ["project__name", "project__api_token", "reason", "actor_label", "actor__username"]
    list_select_related = ["project", "actor"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "project",
        "resource",
        "action",
        "state",
        "old_limited_until",
        "new_limited_until",
        "reason",
        "actor",
        "actor_label",
    ]
    readonly_fields = fields

    @admin.display(description="action")
    def action(self, obj: QuotaLimitChange) -> str:
        """Limited, lifted, suspended or suspension lifted: a clear or an automatic lift is not "limited"."""
        return obj.action

    @admin.display(description="by")
    def who(self, obj: QuotaLimitChange) -> str:
        return obj.who

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# --- The project page's quota tools ----------------------------------------------------------


class LimitUntilForm(forms.Form):
    """What "Limit AI credits until …" asks for; a naive time is read in the site's time zone."""

    until = forms.DateTimeField(
        label="Limited until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        help_text=f"Time zone: {timezone.get_default_timezone_name()}. Must be in the future. The limit holds "
        "until then: the quota recomputation keeps it (as the project's 'always limit' override).",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        help_text="Recorded in the audit log.",
    )

    def clean_until(self) -> datetime:
        try:
            return check_until(self.cleaned_data["until"])
        except QuotaChangeError as exc:
            raise forms.ValidationError(str(exc)) from exc


class ProjectQuotaAdminMixin:
    """Quota state, audit rows and the AI-credit actions for a project admin."""

    quota_readonly_fields = ("quota_state", "recent_quota_changes")
    quota_actions = ("limit_ai_credits", "lift_ai_credit_limit")

    @admin.display(description="Quota state (live from Redis)")
    def quota_state(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        try:
            status = ql.get_quota_status(obj.api_token)
        except (ql.QuotaStateUnavailable, redis.RedisError):
            return mark_safe("<strong>unavailable</strong> (Redis could not be reached)")
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    s.resource.value,
                    "limited" if s.limited else ("suspended" if s.suspended_until else "ok"),
                    _format_time(s.limited_until),
                    _format_time(s.suspended_until),
                )
                for s in status.values()
            ),
        )
        return format_html(
            '<table class="quota-state"><thead><tr><th>resource</th><th>state</th>'
            "<th>limited until</th><th>suspended until</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Recent quota changes")
    def recent_quota_changes(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "—"
        changes = list(
            QuotaLimitChange.objects.filter(project=obj).select_related("actor")[:RECENT_CHANGES_SHOWN]
        )
        if not changes:
            return "No changes recorded."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _format_time(c.created_at),
                    c.resource,
                    c.action,
                    _format_time(c.old_limited_until),
                    _format_time(c.new_limited_until),
                    c.who,
                    c.reason,
                )
                for c in changes
            ),
        )
        link = reverse("admin:billing_quotalimitchange_changelist") + "?" + urlencode({"project__id__exact": obj.pk})
        return format_html(
            '<table class="quota-changes"><thead><tr><th>when</th><th>resource</th><th>action</th>'
            "<th>old until</th><th>new until</th><th>by</th><th>reason</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">Full audit log for this project</a></p>',
            rows,
            link,
        )

    @admin.action(description="Limit AI credits until …")
    def limit_ai_credits(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """Ask for the time and reason on an intermediate page, then limit each project."""
        form = LimitUntilForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            until, reason = form.cleaned_data["until"], form.cleaned_data["reason"]
            self._apply_to_each(
                request,
                queryset,
                lambda project: set_quota_limit(
                    project, ql.QuotaResource.AI_CREDITS, until, reason=reason, actor=Actor(user=request.user)
                ),
                done=f"AI credits limited until {_format_time(until)}",
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Limit AI credits",
            "opts": self.model._meta,
            "form": form,
            "projects": queryset,
            "action": "limit_ai_credits",
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/billing/limit_ai_credits.html", context)

    @admin.action(description="Lift AI-credit limit")
    def lift_ai_credit_limit(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply_to_each(
            request,
            queryset,
            lambda project: clear_quota_limit(
                project, ql.QuotaResource.AI_CREDITS, reason=LIFT_REASON, actor=Actor(user=request.user)
            ),
            done="AI-credit limit lifted",
        )

    def _apply_to_each(self, request: HttpRequest, queryset: QuerySet, change, *, done: str) -> None:
        """Run `change` per project; one failure is reported and does not stop the others."""
        succeeded = []
        for project in queryset:
            try:
                change(project)
            except (ql.QuotaStateUnavailable, redis.RedisError) as exc:
                self.message_user(
                    request, f"{project}: not changed, Redis could not be reached ({exc}).", messages.ERROR
                )
            except QuotaChangeError as exc:
                self.message_user(request, f"{project}: not changed: {exc}", messages.ERROR)
            else:
                succeeded.append(str(project))
        if succeeded:
            self.message_user(request, f"{done} for: {', '.join(succeeded)}.", messages.SUCCESS)


# --- The project page: accounts' ProjectAdmin plus the quota tools ------------------------
# Accounts knows nothing of billing (no import cycle); billing extends accounts' admin.
from products.accounts.facade import Project, ProjectAdmin  # noqa: E402


class ProjectWithQuotaAdmin(ProjectQuotaAdminMixin, ProjectAdmin):
    extra_detail_fields = ProjectQuotaAdminMixin.quota_readonly_fields
    actions = list(ProjectQuotaAdminMixin.quota_actions)


admin.site.unregister(Project)
admin.site.register(Project, ProjectWithQuotaAdmin)
