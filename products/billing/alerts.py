"""Warn an organization as it uses up its AI credits: 80 % and 100 % of the allowance.

Each threshold is announced once per organization and billing period. The record of
an alert (`UsageAlert`, unique on organization, resource, period start and
threshold) is written first, with INSERT ... ON CONFLICT DO NOTHING RETURNING, so
only the run whose insert won posts; a new period has a new start and re-arms both
thresholds. Messages go out after that commit through the `usage_alert_due` signal:
the receivers (the Slack app posts to the alerts channel of the organization's
integrations) say where they delivered it; when none delivered anywhere, the alert is
written to the log.

When one run finds several thresholds newly crossed (usage jumped from 50 % to
120 %), all are recorded and one message, for the highest, is posted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from products.accounts.facade import Organization

from .models import UsageAlert
from .plans import OrgTerms
from .quota_limiting import QuotaResource
from .signals import SENDER, usage_alert_due

logger = logging.getLogger(__name__)

THRESHOLDS = (80, 100)
RESOURCE = QuotaResource.AI_CREDITS.value


@dataclass(frozen=True)
class AlertToSend:
    organization_id: int
    period_start: datetime
    period_end: datetime
    threshold: int
    usage: int
    allowance: int
    delivered_to: str = ""


def crossed_thresholds(usage: int, allowance: int | None) -> list[int]:
    """Return the thresholds (percent) that `usage` has reached; none for unlimited or zero allowances."""
    if allowance is None or allowance <= 0:
        return []
    return [t for t in THRESHOLDS if usage * 100 >= t * allowance]


def candidate_alerts(terms: dict[int, OrgTerms], usage: dict[int, dict[str, int]]) -> list[AlertToSend]:
    candidates = []
    for org_id, org_terms in terms.items():
        allowance = org_terms.allowances.get(RESOURCE)
        if allowance is None or org_terms.invalid:
            continue
        used = usage.get(org_id, {}).get(RESOURCE, 0)
        for threshold in crossed_thresholds(used, allowance.allowance):
            candidates.append(
                AlertToSend(org_id, org_terms.period_start, org_terms.period_end, threshold, used, allowance.allowance)
            )
    return candidates


def record_new_alerts(candidates: list[AlertToSend], now: datetime) -> dict[tuple, int]:
    """Insert the candidates not sent before; return {(org, period_start, threshold): id} of those this call inserted.

    One query on PostgreSQL, whatever the number of candidates.
    """
    if not candidates:
        return {}
    table = UsageAlert._meta.db_table
    if connection.vendor == "postgresql":
        sql = f"""
            INSERT INTO {table} (organization_id, resource, period_start, threshold, usage, allowance, delivered_to, sent_at)
            SELECT org_id, %s, period_start, threshold, usage, allowance, '', %s
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::smallint[], %s::bigint[], %s::bigint[])
                 AS c(org_id, period_start, threshold, usage, allowance)
            ON CONFLICT (organization_id, resource, period_start, threshold) DO NOTHING
            RETURNING organization_id, period_start, threshold, id
        """
        params = [
            RESOURCE,
            now,
            [c.organization_id for c in candidates],
            [c.period_start for c in candidates],
            [c.threshold for c in candidates],
            [c.usage for c in candidates],
            [c.allowance for c in candidates],
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            inserted = cursor.fetchall()
        return {(org_id, start, threshold): pk for org_id, start, threshold, pk in inserted}
    inserted = {}  # SQLite (development only): one row at a time
    for c in candidates:
        row, created = UsageAlert.objects.get_or_create(
            organization_id=c.organization_id,
            resource=RESOURCE,
            period_start=c.period_start,
            threshold=c.threshold,
            defaults={"usage": c.usage, "allowance": c.allowance, "sent_at": now},
        )
        if created:
            inserted[(c.organization_id, c.period_start, c.threshold)] = row.pk
    return inserted


def send_usage_alerts(
    terms: dict[int, OrgTerms], usage: dict[int, dict[str, int]], now: datetime, *, dry_run: bool = False
) -> list[AlertToSend]:
    """Record and post the alerts newly due; return them. A dry run only returns what would be sent."""
    candidates = candidate_alerts(terms, usage)
    if dry_run:
        if not candidates:
            return []
        sent = set(
            UsageAlert.objects.filter(
                organization_id__in={c.organization_id for c in candidates}, resource=RESOURCE
            ).values_list("organization_id", "period_start", "threshold")
        )
        return [c for c in candidates if (c.organization_id, c.period_start, c.threshold) not in sent]
    alert_ids = record_new_alerts(candidates, now)
    new = [c for c in candidates if (c.organization_id, c.period_start, c.threshold) in alert_ids]
    if not new:
        return []
    highest: dict[int, AlertToSend] = {}
    for alert in new:
        best = highest.get(alert.organization_id)
        if best is None or alert.threshold > best.threshold:
            highest[alert.organization_id] = alert
    delivered = _notify(list(highest.values()))
    _record_delivery(
        {
            alert_ids[(a.organization_id, a.period_start, a.threshold)]: ", ".join(delivered[a.organization_id])[:200]
            for a in new
            if a.organization_id in delivered
        }
    )
    return new


def _record_delivery(delivered_to_by_id: dict[int, str]) -> None:
    """Note where each alert went; one UPDATE ... FROM unnest on PostgreSQL."""
    if not delivered_to_by_id:
        return
    if connection.vendor != "postgresql":
        for pk, where in delivered_to_by_id.items():
            UsageAlert.objects.filter(pk=pk).update(delivered_to=where)
        return
    table = UsageAlert._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS a SET delivered_to = v.delivered_to "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, delivered_to) WHERE a.id = v.id",
            [list(delivered_to_by_id), list(delivered_to_by_id.values())],
        )


def alert_text(alert: AlertToSend, organization_name: str) -> str:
    percent = alert.usage * 100 // alert.allowance
    end = f"{alert.period_end:%Y-%m-%d %H:%M} UTC"
    if alert.threshold >= 100:
        return (
            f":no_entry: *{organization_name}* has used all of its AI credits for this billing period "
            f"({alert.usage:,} of {alert.allowance:,} credits, {percent}%). New work from Slack is paused "
            f"until the period ends on {end} or the allowance is raised: {settings.BILLING_URL}"
        )
    return (
        f":warning: *{organization_name}* has used {percent}% of its AI credits for this billing period "
        f"({alert.usage:,} of {alert.allowance:,} credits). The period ends on {end}. "
        f"Manage billing: {settings.BILLING_URL}"
    )


def _notify(alerts: list[AlertToSend]) -> dict[int, list[str]]:
    """Announce each alert through `usage_alert_due` (or log it); return where each went."""
    names = dict(Organization.objects.filter(pk__in=[a.organization_id for a in alerts]).values_list("pk", "name"))
    delivered: dict[int, list[str]] = {}
    for alert in alerts:
        text = alert_text(alert, names.get(alert.organization_id, f"Organization #{alert.organization_id}"))
        delivered[alert.organization_id] = deliver_alert(alert.organization_id, text)
    return delivered


def deliver_alert(organization_id: int, text: str) -> list[str]:
    """Send `text` to every receiver of `usage_alert_due`; return where it went ("log" when nowhere)."""
    where: list[str] = []
    for receiver, result in usage_alert_due.send_robust(sender=SENDER, organization_id=organization_id, text=text):
        if isinstance(result, Exception):
            logger.error(
                "could not post the usage alert for org %s: %s raised %r",
                organization_id, getattr(receiver, "__qualname__", receiver), result, exc_info=result,
            )
            where.append(f"failed: {getattr(receiver, '__name__', 'receiver')}")
            continue
        for destination in result or []:
            where.append(str(destination))
            if str(destination).startswith("failed:"):
                channel = str(destination).removeprefix("failed:").strip()
                logger.warning("could not post the usage alert for org %s to %s", organization_id, channel)
    if not any(not w.startswith("failed:") for w in where):
        reason = "every delivery failed" if where else "nowhere to deliver it, e.g. no Slack alerts channel configured"
        logger.warning("usage alert (%s) org=%s: %s", reason, organization_id, text)
    return where or ["log"]
