"""Recording metered AI usage, and summing it per organization.

`record_usage_events` stores events that the usage endpoint has already checked (the
LLM gateway's serializer validates them and the product registry marks them billable),
working out each event's AI credits from its cost here, in one transaction, once per
`(project, uuid)`; `billable_usage_by_org` sums usage for every organization's current
period in one query. Billing does not validate requests: it keeps the rules about
money (credits, what counts) and storage.
"""
from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from products.accounts.facade import Project

from .models import UsageEvent
from .quota_limiting import QuotaResource

INSERT_BATCH = 1000


@dataclass(frozen=True)
class CheckedUsageEvent:
    """One `$ai_generation` event, already validated, with `billable` decided by the product registry.

    `product` is the canonical product name (aliases resolved); `properties` are the
    ones to store, with `$ai_product` and `$ai_billable` already set by the registry.
    `cost_usd` is rounded to 9 decimal places and within the column's range.
    """

    uuid: uuid_lib.UUID
    timestamp: datetime
    product: str
    billable: bool
    cost_usd: Decimal
    event: str = "$ai_generation"
    model: str = ""
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    is_error: bool = False
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedUsage:
    """What one request recorded.

    `received` counts every event sent (a uuid repeated in the request counts each
    time); `stored` the ones new to the project; `duplicates` the rest (already
    recorded, or repeated in the request). `billable` and `credits` describe the
    distinct events of the request: how many count against AI credits, and the credits
    they carry (counted once however often they are sent).
    """

    received: int
    stored: int
    duplicates: int
    billable: int = 0
    credits: int = 0


def credits_for_cost(cost_usd: Decimal, markup: Decimal | None = None) -> int:
    """Return the credits for a cost: round(cost_usd * 100 * (1 + markup)), halves rounded up.

    `markup` defaults to the `AI_CREDITS_MARKUP` setting.
    """
    markup = Decimal(str(settings.AI_CREDITS_MARKUP)) if markup is None else Decimal(str(markup))
    return int((Decimal(cost_usd) * 100 * (1 + markup)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def record_usage_events(project: Project, events: list[CheckedUsageEvent]) -> RecordedUsage:
    """Store checked events for `project` in one transaction; events already stored are skipped.

    Precondition: events sharing a uuid are the same event (the caller refuses a batch
    where they differ); the first is stored. The unique `(project, uuid)` constraint
    makes a resend (even a concurrent one) a no-op.
    """
    distinct: dict[uuid_lib.UUID, CheckedUsageEvent] = {}
    for event in events:
        distinct.setdefault(event.uuid, event)
    credits = {e.uuid: credits_for_cost(e.cost_usd) for e in distinct.values()}
    with transaction.atomic():
        existing = set(
            UsageEvent.objects.filter(project=project, uuid__in=list(distinct)).values_list("uuid", flat=True)
        )
        new = [
            UsageEvent(
                project=project,
                organization_id=project.organization_id,
                uuid=e.uuid,
                event=e.event,
                timestamp=e.timestamp,
                product=e.product,
                model=e.model,
                provider=e.provider,
                input_tokens=e.input_tokens,
                output_tokens=e.output_tokens,
                cost_usd=e.cost_usd,
                credits=credits[e.uuid],
                billable=e.billable,
                is_error=e.is_error,
                properties=e.properties,
            )
            for e in distinct.values()
            if e.uuid not in existing
        ]
        UsageEvent.objects.bulk_create(new, ignore_conflicts=True, batch_size=INSERT_BATCH)
    billable = [e for e in distinct.values() if e.billable]
    return RecordedUsage(
        received=len(events),
        stored=len(new),
        duplicates=len(events) - len(new),
        billable=len(billable),
        credits=sum(credits[e.uuid] for e in billable),
    )


# Resources metered from usage events, and what each sums.
METERED_RESOURCES: tuple[str, ...] = (QuotaResource.AI_CREDITS.value, QuotaResource.LLM_EVENTS.value)


def billable_usage_by_org(periods: dict[int, tuple[datetime, datetime]]) -> dict[int, dict[str, int]]:
    """Return {organization_id: {resource: usage}} over each organization's own period.

    One query however many organizations: the periods travel as three arrays and
    PostgreSQL joins them to the billable usage rows and groups by organization.
    `ai_credits` is the sum of credits, `llm_events` the number of billable events.
    Organizations with no usage are absent.
    """
    if not periods:
        return {}
    org_ids = list(periods)
    starts = [periods[o][0] for o in org_ids]
    ends = [periods[o][1] for o in org_ids]
    table = UsageEvent._meta.db_table
    if connection.vendor != "postgresql":
        return _usage_by_org_portable(periods)
    sql = f"""
        SELECT p.org_id, COALESCE(SUM(u.credits), 0), COUNT(u.id)
        FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS p(org_id, period_start, period_end)
        JOIN {table} u
          ON u.organization_id = p.org_id
         AND u.billable
         AND u.timestamp >= p.period_start
         AND u.timestamp < p.period_end
        GROUP BY p.org_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [org_ids, starts, ends])
        rows = cursor.fetchall()
    return {
        org_id: {QuotaResource.AI_CREDITS.value: int(credits), QuotaResource.LLM_EVENTS.value: int(count)}
        for org_id, credits, count in rows
    }


def _usage_by_org_portable(periods: dict[int, tuple[datetime, datetime]]) -> dict[int, dict[str, int]]:
    """SQLite (the `make run` default) fallback: one query, periods applied in Python.

    Only for development; production and the benchmark run on PostgreSQL. The usage and
    recomputation tests marked `sqlite` run this path too.
    """
    earliest = min(start for start, _ in periods.values())
    rows = UsageEvent.objects.filter(billable=True, timestamp__gte=earliest).values_list(
        "organization_id", "timestamp", "credits"
    )
    result: dict[int, dict[str, int]] = {}
    for org_id, ts, credits in rows.iterator():
        period = periods.get(org_id)
        if period and period[0] <= ts < period[1]:
            entry = result.setdefault(org_id, {r: 0 for r in METERED_RESOURCES})
            entry[QuotaResource.AI_CREDITS.value] += credits
            entry[QuotaResource.LLM_EVENTS.value] += 1
    return result


@dataclass(frozen=True)
class ProductModelUsage:
    """Usage of one (product, model, provider) over a time range, for the LLM gateway's admin."""

    product: str
    model: str
    provider: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    credits: int
    billable_credits: int


def usage_by_product_and_model(since: datetime | None = None, until: datetime | None = None) -> list[ProductModelUsage]:
    """Return usage grouped by product, model and provider (one query), most credits first.

    `since` and `until` bound the events' timestamps (`since` <= ts < `until`); None is open.
    `credits` counts every event's credits; `billable_credits` only those that count against
    AI credits.
    """
    from django.db.models import Count, Q, Sum

    rows = UsageEvent.objects.all()
    if since is not None:
        rows = rows.filter(timestamp__gte=since)
    if until is not None:
        rows = rows.filter(timestamp__lt=until)
    grouped = (
        rows.values("product", "model", "provider")
        .annotate(
            n_calls=Count("id"),
            n_errors=Count("id", filter=Q(is_error=True)),
            sum_input_tokens=Sum("input_tokens"),
            sum_output_tokens=Sum("output_tokens"),
            sum_cost_usd=Sum("cost_usd"),
            sum_credits=Sum("credits"),
            sum_billable_credits=Sum("credits", filter=Q(billable=True)),
        )
        .order_by("-sum_credits", "product", "model", "provider")
    )
    return [
        ProductModelUsage(
            product=row["product"],
            model=row["model"],
            provider=row["provider"],
            calls=row["n_calls"],
            errors=row["n_errors"],
            input_tokens=int(row["sum_input_tokens"] or 0),
            output_tokens=int(row["sum_output_tokens"] or 0),
            cost_usd=row["sum_cost_usd"] or Decimal(0),
            credits=int(row["sum_credits"] or 0),
            billable_credits=int(row["sum_billable_credits"] or 0),
        )
        for row in grouped
    ]


def credits_for_run(project_id: int, run_id: int, since: datetime | None = None) -> int:
    """Return the AI credits a task run spent: the billable events of `project_id` whose `$ai_run_id` is `run_id`.

    The LLM gateway sets `$ai_run_id` on every call made with a run token (callers cannot
    set it). `since` (the run's creation time, less a margin) bounds the scan to the
    project's events from then on; None scans all of the project's events.
    """
    from django.db.models import Sum

    rows = UsageEvent.objects.filter(project_id=project_id, billable=True, **{"properties__$ai_run_id": run_id})
    if since is not None:
        rows = rows.filter(timestamp__gte=since)
    return int(rows.aggregate(total=Sum("credits"))["total"] or 0)
