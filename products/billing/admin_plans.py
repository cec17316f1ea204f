"""Admin for plans, allowances, operator overrides, usage events and sent alerts.

Kept apart from `admin.py` (quota limits and their audit log) and registered from
`BillingConfig.ready()`.
"""
from __future__ import annotations

from django.contrib import admin

from .models import BillingPlan, QuotaOverride, ResourceAllowance, UsageAlert, UsageEvent


class ResourceAllowanceInline(admin.TabularInline):
    model = ResourceAllowance
    extra = 1
    fields = ["resource", "allowance", "overage_buffer", "grace_period_days"]


@admin.register(BillingPlan)
class BillingPlanAdmin(admin.ModelAdmin):
    list_display = ["organization", "name", "period_start", "period_end", "period_months", "updated_at"]
    search_fields = ["organization__name", "name"]
    autocomplete_fields = ["organization"]
    inlines = [ResourceAllowanceInline]
    fieldsets = [
        (None, {"fields": ["organization", "name"]}),
        (
            "Billing period",
            {
                "fields": ["period_anchor", "period_months", "period_start", "period_end"],
                "description": "Leave start and end empty to count periods from the anchor. A new period "
                "begins automatically when the current one ends.",
            },
        ),
    ]


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    """Organization-wide overrides, and single-project ones (a limit set by hand is one, until its time)."""

    list_display = ["organization", "project", "resource", "mode", "until", "reason", "created_by", "created_at"]
    list_filter = ["mode", "resource"]
    list_select_related = ["organization", "project", "created_by"]
    search_fields = ["organization__name", "project__name", "reason"]
    autocomplete_fields = ["organization", "project"]
    fields = ["organization", "project", "resource", "mode", "until", "reason", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """Read-only: usage is what the gateway recorded; nobody edits it by hand."""

    list_display = ["timestamp", "project", "product", "model", "credits", "billable", "is_error"]
    list_filter = ["billable", "product", "is_error"]
    search_fields = ["uuid", "project__name", "organization__name"]
    date_hierarchy = "timestamp"
    list_select_related = ["project"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    list_display = ["organization", "resource", "threshold", "period_start", "usage", "allowance", "delivered_to", "sent_at"]
    list_filter = ["threshold", "resource"]
    search_fields = ["organization__name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
