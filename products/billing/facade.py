"""The billing product's public module: the only one other products and `temporal/` import.

Quota state (`is_team_limited` is the one answer to "is this project limited for this
resource"; `get_quota_status` reads every resource at once), operator changes to it,
usage recording (`record_usage_events` stores events the caller has already validated,
working out their credits with `credits_for_cost`), and the `usage_alert_due` signal,
which billing sends when an organization should be told about its usage and which
other products (the Slack app) answer by delivering the text.

Billing depends on `products.accounts` only; it never imports another product.
"""
from __future__ import annotations

from .live_credits import LiveCredits, add_live_credits, live_credits, live_credits_from, queue_add_live_credits, queue_live_credits
from .quota_limiting import (
    QuotaResource,
    QuotaStateUnavailable,
    ResourceQuotaStatus,
    get_quota_status,
    is_team_limited,
    queue_team_limited,
    team_limited_from,
)
from .services import Actor, QuotaChangeError, clear_quota_limit, set_quota_limit
from .signals import BillingNotice, billing_page_notices, quota_recomputed, usage_alert_due
from .summary import BillingSummary, billing_summary
from .usage import (
    CheckedUsageEvent,
    ProductModelUsage,
    RecordedUsage,
    credits_for_cost,
    credits_for_run,
    record_usage_events,
    usage_by_product_and_model,
)

__all__ = [
    "Actor",
    "BillingNotice",
    "BillingSummary",
    "billing_page_notices",
    "billing_summary",
    "quota_recomputed",
    "CheckedUsageEvent",
    "ProductModelUsage",
    "LiveCredits",
    "QuotaChangeError",
    "QuotaResource",
    "QuotaStateUnavailable",
    "RecordedUsage",
    "ResourceQuotaStatus",
    "add_live_credits",
    "clear_quota_limit",
    "credits_for_cost",
    "credits_for_run",
    "get_quota_status",
    "is_team_limited",
    "live_credits",
    "live_credits_from",
    "queue_add_live_credits",
    "queue_live_credits",
    "queue_team_limited",
    "record_usage_events",
    "set_quota_limit",
    "team_limited_from",
    "usage_by_product_and_model",
    "usage_alert_due",
]
