"""Shared helpers for the usage, recomputation and alert tests."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from products.billing.models import BillingPlan, ResourceAllowance, UsageEvent


def make_plan(org, *, anchor: datetime | None = None, **allowances) -> BillingPlan:
    """A plan whose period started `anchor` (default: 10 days ago); allowances as
    resource=allowance or resource=(allowance, overage_buffer, grace_days)."""
    plan = BillingPlan.objects.create(organization=org, period_anchor=anchor or timezone.now() - timedelta(days=10))
    for resource, spec in allowances.items():
        allowance, buffer, grace = spec if isinstance(spec, tuple) else (spec, 0, 0)
        ResourceAllowance.objects.create(
            plan=plan, resource=resource, allowance=allowance, overage_buffer=buffer, grace_period_days=grace
        )
    return plan


def use(project, credits: int, *, ts: datetime | None = None, billable: bool = True, product: str | None = None) -> UsageEvent:
    """Record usage straight into the table (the API is exercised in its own tests)."""
    return UsageEvent.objects.create(
        project=project,
        organization_id=project.organization_id,
        uuid=uuid.uuid4(),
        timestamp=ts or timezone.now() - timedelta(hours=1),
        product=product or ("slack_app" if billable else "posthog_code"),
        credits=credits,
        cost_usd=credits / 100,
        billable=billable,
    )
