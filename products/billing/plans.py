"""What each organization may use, and over what time: `load_org_terms` reads it for the recomputation.

`load_org_terms` reads every organization's period, allowances, overrides and project
tokens in a fixed number of queries. The pure period arithmetic and allowance rules
live in `periods.py` (re-exported here, where callers have always found them).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from products.accounts.facade import Organization, Project

from .models import BillingPlan, QuotaOverride, ResourceAllowance
from .periods import NO_GRACE_RESOURCES, RESOURCE_NAMES, add_months, check_allowance, period_containing

__all__ = [
    "NO_GRACE_RESOURCES",
    "OVERRIDE_MODES",
    "RESOURCE_NAMES",
    "Allowance",
    "OrgTerms",
    "ProjectOverride",
    "add_months",
    "check_allowance",
    "load_org_terms",
    "period_containing",
    "terms_for_plan",
]

OVERRIDE_MODES = frozenset(QuotaOverride.Mode.values)


@dataclass(frozen=True)
class Allowance:
    allowance: int | None
    overage_buffer: int = 0
    grace_period_days: int = 0

    @property
    def unlimited(self) -> bool:
        return self.allowance is None


@dataclass(frozen=True)
class ProjectOverride:
    """An override for one project (a limit set by hand is an "always limit" until its time)."""

    mode: str
    until: datetime | None = None


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
    # Organization-wide overrides in force: resource -> mode, and the end of the time-bound ones.
    overrides: dict[str, str] = field(default_factory=dict)
    override_until: dict[str, datetime] = field(default_factory=dict)
    # Single-project overrides in force: resource -> {project_id: override}.
    project_overrides: dict[str, dict[int, ProjectOverride]] = field(default_factory=dict)
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
    """Load every organization's period, allowances, overrides and project tokens: five queries in all.

    Overrides that ended (`until` at or before `now`) are left out: they no longer apply.
    """
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

    for org_id, project_id, resource, mode, until in overrides.values_list(
        "organization_id", "project_id", "resource", "mode", "until"
    ).iterator(chunk_size=10_000):
        if org_id not in terms:
            continue
        if resource not in RESOURCE_NAMES or mode not in OVERRIDE_MODES:
            terms[org_id].invalid.append(f"override {mode!r} for {resource!r} is not one the job understands.")
            continue
        if until is not None and until <= now:
            continue
        if project_id is not None:
            terms[org_id].project_overrides.setdefault(resource, {})[project_id] = ProjectOverride(mode, until)
            continue
        terms[org_id].overrides[resource] = mode
        if until is not None:
            terms[org_id].override_until[resource] = until

    tokens: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for project_id, org_id, token in projects.order_by("pk").values_list("pk", "organization_id", "api_token").iterator(
        chunk_size=20_000
    ):
        tokens[org_id].append((project_id, token))
    for org_id, org_terms in terms.items():
        org_terms.project_tokens = tokens.get(org_id, [])
    return terms
