"""Recording metered AI usage, and summing it per organization.

`check_usage_events` validates a whole batch and raises `InvalidUsageEvents` listing
every bad event; `record_usage_events` stores a checked batch in one transaction,
once per `(project, uuid)`; `billable_usage_by_org` sums usage for every
organization's current period in one query.
"""
from __future__ import annotations

import math
import uuid as uuid_lib
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from products.accounts.models import Project
from products.llm_gateway.products import UnknownProduct
from products.llm_gateway.usage import tag_usage_properties

from .models import UsageEvent
from .quota_limiting import QuotaResource

MAX_BATCH_SIZE = 1000
MAX_EVENT_AGE = timedelta(days=35)
MAX_CLOCK_SKEW = timedelta(minutes=5)
ACCEPTED_EVENTS = frozenset({"$ai_generation"})
MAX_TOKENS = 2**62
MAX_COST_USD = Decimal("1000000")  # per event; far above any real call, far below the column's limit


class InvalidUsageEvents(ValueError):
    """The batch was refused whole; `errors` has one entry per bad event."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


@dataclass(frozen=True)
class CheckedUsageEvent:
    uuid: uuid_lib.UUID
    event: str
    timestamp: datetime
    product: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    credits: int
    billable: bool
    is_error: bool
    properties: dict[str, Any]


@dataclass(frozen=True)
class RecordedUsage:
    received: int
    stored: int
    duplicates: int


def credits_for_cost(cost_usd: Decimal, markup: Decimal | None = None) -> int:
    """Return the credits for a cost: round(cost_usd * 100 * (1 + markup)), halves rounded up."""
    markup = Decimal(str(settings.AI_CREDITS_MARKUP)) if markup is None else markup
    return int((cost_usd * 100 * (1 + markup)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def as_event_list(payload: Any) -> list[Any]:
    """Accept one event (an object), a list of events, or `{"batch": [...]}`."""
    if isinstance(payload, dict) and "batch" in payload and "uuid" not in payload:
        payload = payload["batch"]
    elif isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise InvalidUsageEvents("Send one event object, a list of events, or {\"batch\": [...]}.")
    if not payload:
        raise InvalidUsageEvents("The batch is empty.")
    if len(payload) > MAX_BATCH_SIZE:
        raise InvalidUsageEvents(f"A batch holds at most {MAX_BATCH_SIZE} events; this one has {len(payload)}.")
    return payload


def check_usage_events(payload: Any, *, via_personal_api_key: bool, now: datetime | None = None) -> list[CheckedUsageEvent]:
    """Validate every event of the payload; raise `InvalidUsageEvents` if any one is bad.

    `$ai_billable` is set from the product registry whatever the client sent. Events
    repeated within the batch (same uuid) are kept once.
    """
    now = now or timezone.now()
    raw_events = as_event_list(payload)
    checked: list[CheckedUsageEvent] = []
    errors: list[dict[str, Any]] = []
    seen: set[uuid_lib.UUID] = set()
    for index, raw in enumerate(raw_events):
        event_errors: dict[str, list[str]] = {}
        result = _check_one(raw, event_errors, via_personal_api_key, now)
        if event_errors:
            errors.append({"index": index, "uuid": raw.get("uuid") if isinstance(raw, dict) else None, "errors": event_errors})
        elif result.uuid not in seen:
            seen.add(result.uuid)
            checked.append(result)
    if errors:
        noun = "event is" if len(errors) == 1 else "events are"
        raise InvalidUsageEvents(f"{len(errors)} {noun} invalid; nothing was recorded.", errors)
    return checked


def _check_one(raw: Any, errors: dict[str, list[str]], via_personal_api_key: bool, now: datetime) -> CheckedUsageEvent | None:
    def fail(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not isinstance(raw, dict):
        fail("non_field_errors", "An event must be a JSON object.")
        return None

    try:
        event_uuid = uuid_lib.UUID(str(raw.get("uuid")))
    except (ValueError, TypeError, AttributeError):
        fail("uuid", "Required: a UUID.")
        event_uuid = None

    event = raw.get("event")
    if event not in ACCEPTED_EVENTS:
        fail("event", f"Must be one of: {', '.join(sorted(ACCEPTED_EVENTS))}.")

    timestamp = None
    raw_ts = raw.get("timestamp")
    try:
        parsed = parse_datetime(raw_ts) if isinstance(raw_ts, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        fail("timestamp", "Required: an ISO 8601 date and time.")
    else:
        timestamp = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)
        if timestamp < now - MAX_EVENT_AGE:
            fail("timestamp", "More than 35 days old.")
        elif timestamp > now + MAX_CLOCK_SKEW:
            fail("timestamp", "More than 5 minutes in the future.")

    properties = raw.get("properties")
    if not isinstance(properties, dict):
        fail("properties", "Required: an object.")
        return None

    if _contains_nul(properties):
        fail("properties", "Text may not contain NUL characters.")
        return None

    product = None
    try:
        product, properties = tag_usage_properties(properties)
    except UnknownProduct as exc:
        fail("properties.$ai_product", str(exc))

    model = properties.get("$ai_model", "")
    if not isinstance(model, str) or len(model) > 200:
        fail("properties.$ai_model", "Must be a string of at most 200 characters.")
        model = ""
    elif product is not None and not product.allows_model(model):
        fail("properties.$ai_model", f"Model {model!r} is not allowed for product {product.name}.")
    if product is not None and via_personal_api_key and not product.allow_personal_api_keys:
        fail("properties.$ai_product", f"Product {product.name} does not accept usage sent with a personal API key.")

    provider = properties.get("$ai_provider", "")
    if not isinstance(provider, str) or len(provider) > 100:
        fail("properties.$ai_provider", "Must be a string of at most 100 characters.")
        provider = ""

    tokens = {}
    for name in ("$ai_input_tokens", "$ai_output_tokens"):
        value = properties.get(name, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_TOKENS:
            fail(f"properties.{name}", "Must be a non-negative integer.")
            value = 0
        tokens[name] = value

    cost = _parse_cost(properties.get("$ai_total_cost_usd"))
    if cost is None:
        fail("properties.$ai_total_cost_usd", f"Required: a non-negative number below {MAX_COST_USD}.")

    is_error = properties.get("$ai_is_error", False)
    if is_error is None:
        is_error = False
    if not isinstance(is_error, bool):
        fail("properties.$ai_is_error", "Must be true or false.")

    if errors:
        return None
    return CheckedUsageEvent(
        uuid=event_uuid,
        event=event,
        timestamp=timestamp,
        product=product.name,
        model=model,
        provider=provider,
        input_tokens=tokens["$ai_input_tokens"],
        output_tokens=tokens["$ai_output_tokens"],
        cost_usd=cost,
        credits=credits_for_cost(cost),
        billable=product.billable,
        is_error=is_error,
        properties=properties,
    )


def _contains_nul(value: Any) -> bool:
    """PostgreSQL cannot store U+0000 in text or jsonb; refuse it rather than fail later."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _parse_cost(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    if not cost.is_finite() or cost < 0 or cost >= MAX_COST_USD:
        return None
    return cost.quantize(Decimal("0.000000001"), rounding=ROUND_HALF_UP)


def record_usage_events(project: Project, events: list[CheckedUsageEvent]) -> RecordedUsage:
    """Store checked events for `project` in one transaction; events already stored are skipped.

    The unique `(project, uuid)` constraint makes a resend (even a concurrent one) a no-op.
    """
    uuids = [e.uuid for e in events]
    with transaction.atomic():
        existing = set(UsageEvent.objects.filter(project=project, uuid__in=uuids).values_list("uuid", flat=True))
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
                credits=e.credits,
                billable=e.billable,
                is_error=e.is_error,
                properties=e.properties,
            )
            for e in events
            if e.uuid not in existing
        ]
        UsageEvent.objects.bulk_create(new, ignore_conflicts=True, batch_size=MAX_BATCH_SIZE)
    return RecordedUsage(received=len(events), stored=len(new), duplicates=len(events) - len(new))


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

    Only for development; production, tests and the benchmark run on PostgreSQL.
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
