"""What the billing page shows an organization's members: plan, period, AI credits, limits, next steps.

Every figure comes from the functions the quota recomputation itself uses, so the page
and the limits never disagree: the period and allowance from `plans.load_org_terms`, the
credits used from `usage.billable_usage_by_org`, and the limit from the Redis quota state
(`quota_limiting.get_quota_status`, the state every gate reads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from products.accounts.facade import Organization

from . import quota_limiting as ql
from .models import BillingPlan, QuotaOverride, UsageEvent
from .plans import load_org_terms
from .usage import billable_usage_by_org

AI_CREDITS = ql.QuotaResource.AI_CREDITS.value
# Past this share of the allowance, members are told to act before they run out (as the usage alerts do).
WARN_AT_PERCENT = 80
# The chart shows at most this many days (the most recent ones of a long period).
MAX_CHART_DAYS = 93


# Chart geometry, in the SVG's own units: each day is a BAR_STEP-wide slot, bars are CHART_HEIGHT tall at most.
BAR_STEP, BAR_WIDTH, CHART_HEIGHT = 10, 8, 100


@dataclass(frozen=True)
class DailyUse:
    """One bar of the chart: the AI credits billed on `day`, and where its bar goes in the SVG."""

    day: date
    credits: int
    x: int
    height: float  # in percent of the tallest day, so of CHART_HEIGHT

    @property
    def y(self) -> float:
        return round(CHART_HEIGHT - self.height, 1)


@dataclass(frozen=True)
class BillingSummary:
    organization: Organization
    plan_name: str | None  # None: the organization has no plan, so it is unlimited
    period_start: datetime
    period_end: datetime
    credits_used: int
    allowance: int | None  # None: unlimited
    overage_buffer: int
    # The Redis quota state of the organization's projects: None when not limited.
    limited_until: datetime | None
    quota_state_known: bool
    override: str | None  # "never_limit" / "always_limit" set by an operator, or None
    daily: list[DailyUse] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    # What other products ask the member to act on (signals.billing_page_notices), filled by the page.
    notices: list = field(default_factory=list)

    @property
    def limited(self) -> bool:
        return self.limited_until is not None

    @property
    def limit_at(self) -> int | None:
        """Usage at which the organization is limited: the allowance plus the overage buffer."""
        return None if self.allowance is None else self.allowance + self.overage_buffer

    @property
    def percent_used(self) -> int | None:
        if not self.allowance:
            return None
        return round(100 * self.credits_used / self.allowance)

    @property
    def remaining(self) -> int | None:
        """Credits left in the allowance (the overage buffer is a tolerance, not part of it)."""
        return None if self.allowance is None else max(0, self.allowance - self.credits_used)

    @property
    def chart_max(self) -> int:
        return max((d.credits for d in self.daily), default=0)

    @property
    def chart_width(self) -> int:
        return max(1, len(self.daily)) * BAR_STEP

    @property
    def meter_percent(self) -> int:
        """Width of the allowance meter: the percent used, at most 100."""
        return min(100, self.percent_used or 0)


def billing_summary(organization: Organization, now: datetime | None = None) -> BillingSummary:
    """Return the organization's billing figures for the period containing `now`.

    When Redis cannot be read, `quota_state_known` is False and `limited_until` None: the
    page says the state is unknown rather than "not limited".
    """
    now = now or timezone.now()
    terms = load_org_terms(now, [organization.pk])[organization.pk]
    start, end = terms.period_start, terms.period_end
    allowance = terms.allowances.get(AI_CREDITS)
    plan = BillingPlan.objects.filter(organization=organization).only("name").first()
    used = billable_usage_by_org({organization.pk: (start, end)}).get(organization.pk, {}).get(AI_CREDITS, 0)
    limited_until, known = _limited_until(organization)
    # The organization-wide override in force, as the recomputation sees it (a project's
    # hand-set limit shows up as that project's limit, not as the organization's).
    override = terms.overrides.get(AI_CREDITS)
    summary = BillingSummary(
        organization=organization,
        plan_name=plan.name if plan else None,
        period_start=start,
        period_end=end,
        credits_used=used,
        allowance=allowance.allowance if allowance else None,
        overage_buffer=allowance.overage_buffer if allowance else 0,
        limited_until=limited_until,
        quota_state_known=known,
        override=override,
        daily=daily_use(organization, start, min(end, now)),
    )
    summary.next_steps.extend(next_steps(summary))
    return summary


def _limited_until(organization: Organization) -> tuple[datetime | None, bool]:
    """Latest `ai_credits` limited-until among the organization's projects, and whether Redis answered."""
    latest: datetime | None = None
    try:
        for token in organization.projects.values_list("api_token", flat=True):
            until = ql.get_quota_status(token)[ql.QuotaResource.AI_CREDITS].limited_until
            if until is not None and (latest is None or until > latest):
                latest = until
    except ql.QuotaStateUnavailable:
        return None, False
    return latest, True


def daily_use(organization: Organization, start: datetime, until: datetime) -> list[DailyUse]:
    """Billable AI credits per UTC day from `start` up to `until`, every day present (zero when idle)."""
    first, last = start.astimezone(dt_timezone.utc).date(), until.astimezone(dt_timezone.utc).date()
    first = max(first, last - timedelta(days=MAX_CHART_DAYS - 1))
    rows = (
        UsageEvent.objects.filter(organization=organization, billable=True, timestamp__gte=start, timestamp__lt=until)
        .annotate(day=TruncDate("timestamp", tzinfo=dt_timezone.utc))
        .values("day")
        .annotate(total=Sum("credits"))
        .values_list("day", "total")
    )
    by_day = {day: int(total or 0) for day, total in rows}
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    tallest = max((by_day.get(day, 0) for day in days), default=0)
    return [
        DailyUse(
            day,
            by_day.get(day, 0),
            x=i * BAR_STEP,
            height=round(CHART_HEIGHT * by_day.get(day, 0) / tallest, 1) if tallest else 0.0,
        )
        for i, day in enumerate(days)
    ]


def next_steps(summary: BillingSummary) -> list[str]:
    """What a member can do next, in plain words, most useful first."""
    end = f"{summary.period_end:%Y-%m-%d %H:%M} UTC"
    if not summary.quota_state_known:
        return ["The limit state could not be read just now; reload the page in a moment."]
    if summary.limited:
        until = f"{summary.limited_until:%Y-%m-%d %H:%M} UTC"
        if summary.override == QuotaOverride.Mode.ALWAYS_LIMIT:
            return [f"An operator has limited AI work for this organization until {until}; ask them to lift it."]
        return [
            f"The limit lifts on {until}, when the AI credits of the next period start.",
            "To continue sooner, ask an admin to raise the allowance.",
        ]
    if summary.override == QuotaOverride.Mode.NEVER_LIMIT:
        return ["An operator has set this organization never to be limited for AI credits."]
    if summary.allowance is None:
        return ["This organization has no AI-credit limit: nothing to do."]
    if summary.limit_at is not None and summary.credits_used >= summary.limit_at:
        return [
            f"The allowance is used up: AI work will be paused at the next quota check, until {end}.",
            "Ask an admin to raise the allowance to keep working.",
        ]
    if summary.percent_used is not None and summary.percent_used >= WARN_AT_PERCENT:
        return [
            f"{summary.percent_used} % of the allowance is used; credits reset on {end}.",
            "If you need more before then, ask an admin to raise the allowance.",
        ]
    return [f"Nothing to do: {summary.remaining} AI credits remain until {end}."]
