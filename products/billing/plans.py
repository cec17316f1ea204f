"""Billing periods and allowances: what each organization may use, and over what time.

Pure functions (no queries) for period arithmetic and allowance checks, plus
`load_org_terms`, which reads every organization's terms in a fixed number of queries
for the recomputation.
"""
from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from .quota_limiting import QuotaResource

# Resources that may not have a grace period: running out of AI credits stops work at once.
NO_GRACE_RESOURCES = frozenset({QuotaResource.AI_CREDITS.value})
RESOURCE_NAMES = frozenset(r.value for r in QuotaResource)
OVERRIDE_MODES = frozenset({"never_limit", "always_limit"})


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


@dataclass(frozen=True)
class Allowance:
    allowance: int | None
    overage_buffer: int = 0
    grace_period_days: int = 0

    @property
    def unlimited(self) -> bool:
        return self.allowance is None


@dataclass
class OrgTerms:
    """Everything the recomputation needs to know about one organization, already loaded."""

    organization_id: int
    period_start: datetime
    period_end: datetime
    plan_id: int | None = None
    # The stored period, when it has ended and must move on (None when current).
    rolled_from: tuple[datetime, datetime] | None = None
    allowances: dict[str, Allowance] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)
    project_tokens: list[tuple[int, str]] = field(default_factory=list)


def terms_for_plan(organization_id: int, org_created_at: datetime, plan, now: datetime) -> OrgTerms:
    """Return the organization's current period from its plan (or the default), rolling it on if it ended."""
    if plan is None:
        start, end = period_containing(org_created_at, 1, now)
        return OrgTerms(organization_id, start, end)
    rolled_from = None
    start, end = plan.period_start, plan.period_end
    if start is None or end is None or end <= now:
        anchor = plan.period_anchor or org_created_at
        new_start, new_end = period_containing(anchor, plan.period_months, now)
        if start is not None and end is not None:
            rolled_from = (start, end)
            # A hand-set period that ended later than the anchor's boundary is not re-counted.
            new_start = max(new_start, end) if end <= now else new_start
        start, end = new_start, new_end
    return OrgTerms(organization_id, start, end, plan_id=plan.pk, rolled_from=rolled_from)


def load_org_terms(now: datetime, organization_ids: list[int] | None = None) -> dict[int, OrgTerms]:
    """Load every organization's period, allowances, overrides and project tokens: five queries in all."""
    from products.accounts.models import Organization, Project

    from .models import BillingPlan, QuotaOverride, ResourceAllowance

    orgs = Organization.objects.all()
    plans = BillingPlan.objects.all()
    allowances = ResourceAllowance.objects.all()
    overrides = QuotaOverride.objects.all()
    projects = Project.objects.all()
    if organization_ids is not None:
        orgs = orgs.filter(pk__in=organization_ids)
        plans = plans.filter(organization_id__in=organization_ids)
        allowances = allowances.filter(plan__organization_id__in=organization_ids)
        overrides = overrides.filter(organization_id__in=organization_ids)
        projects = projects.filter(organization_id__in=organization_ids)

    plan_by_org = {plan.organization_id: plan for plan in plans.only(
        "id", "organization_id", "period_anchor", "period_months", "period_start", "period_end"
    )}
    terms: dict[int, OrgTerms] = {}
    for org_id, created_at in orgs.order_by("pk").values_list("pk", "created_at").iterator(chunk_size=10_000):
        try:
            terms[org_id] = terms_for_plan(org_id, created_at, plan_by_org.get(org_id), now)
        except Exception as exc:  # a plan row we cannot read: this organization fails, the rest go on
            start, end = period_containing(created_at, 1, now)
            terms[org_id] = OrgTerms(org_id, start, end, invalid=[f"billing period: {type(exc).__name__}: {exc}"])
    org_by_plan = {plan.pk: plan.organization_id for plan in plan_by_org.values()}

    for plan_id, resource, allowance, buffer, grace in allowances.values_list(
        "plan_id", "resource", "allowance", "overage_buffer", "grace_period_days"
    ).iterator(chunk_size=10_000):
        org_terms = terms.get(org_by_plan.get(plan_id))
        if org_terms is None:
            continue
        try:
            check_allowance(resource, allowance, buffer, grace)
        except ValueError as exc:
            org_terms.invalid.append(str(exc))
            continue
        org_terms.allowances[resource] = Allowance(allowance, buffer, grace)

    for org_id, resource, mode in overrides.values_list("organization_id", "resource", "mode").iterator(chunk_size=10_000):
        if org_id not in terms:
            continue
        if resource not in RESOURCE_NAMES or mode not in OVERRIDE_MODES:
            terms[org_id].invalid.append(f"override {mode!r} for {resource!r} is not one the job understands.")
            continue
        terms[org_id].overrides[resource] = mode

    tokens: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for project_id, org_id, token in projects.order_by("pk").values_list("pk", "organization_id", "api_token").iterator(
        chunk_size=20_000
    ):
        tokens[org_id].append((project_id, token))
    for org_id, org_terms in terms.items():
        org_terms.project_tokens = tokens.get(org_id, [])
    return terms
