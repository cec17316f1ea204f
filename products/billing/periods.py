"""Billing-period arithmetic and the rules an allowance row must follow: pure functions, no queries.

Kept apart from `plans.py` (which reads plans from the database) so that the models can
validate and fill in periods without importing the module that queries them.
"""
from __future__ import annotations

import calendar
from datetime import datetime

from .quota_limiting import QuotaResource

# Resources that may not have a grace period: running out of AI credits stops work at once.
NO_GRACE_RESOURCES = frozenset({QuotaResource.AI_CREDITS.value})
RESOURCE_NAMES = frozenset(r.value for r in QuotaResource)


def add_months(moment: datetime, months: int) -> datetime:
    """Return `moment` moved by `months` calendar months, clamping the day (Jan 31 + 1 = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_containing(anchor: datetime, months: int, now: datetime) -> tuple[datetime, datetime]:
    """Return the `[start, end)` period of `months` months, counted from `anchor`, that contains `now`.

    Each boundary is computed from the anchor (never from the previous boundary), so
    an anchor on the 31st gives periods ending on the 31st whenever the month has one.
    Boundaries are whole seconds, like the Redis scores that record them.
    """
    months = max(1, months)
    anchor = anchor.replace(microsecond=0)
    if now < anchor:
        return anchor, add_months(anchor, months)
    elapsed = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    k = max(0, elapsed // months - 1)
    while add_months(anchor, (k + 1) * months) <= now:
        k += 1
    return add_months(anchor, k * months), add_months(anchor, (k + 1) * months)


def check_allowance(resource: str, allowance: int | None, overage_buffer: int, grace_period_days: int) -> None:
    """Raise ValueError, saying why, when an allowance row cannot be applied."""
    if resource not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource {resource!r} in an allowance.")
    if allowance is not None and allowance < 0:
        raise ValueError(f"{resource}: the allowance cannot be negative ({allowance}).")
    if overage_buffer is None or overage_buffer < 0:
        raise ValueError(f"{resource}: the overage buffer cannot be negative ({overage_buffer}).")
    if grace_period_days and resource in NO_GRACE_RESOURCES:
        raise ValueError(f"{resource} has no grace period (got {grace_period_days} days).")
    if grace_period_days is not None and grace_period_days < 0:
        raise ValueError(f"{resource}: the grace period cannot be negative.")
