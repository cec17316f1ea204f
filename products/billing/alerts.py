"""Warn an organization as it uses up its AI credits: 80 % and 100 % of the allowance.

Each threshold is announced once per organization and billing period. The record of
an alert (`UsageAlert`, unique on organization, resource, period start and
threshold) is written first, with INSERT ... ON CONFLICT DO NOTHING RETURNING, so
only the run whose insert won posts; a new period has a new start and re-arms both
thresholds. Messages go out after that commit, to the alerts channel configured on
the organization's Slack integrations, or to the log when none is configured.

When one run finds several thresholds newly crossed (usage jumped from 50 % to
120 %), all are recorded and one message, for the highest, is posted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from .models import UsageAlert
from .plans import OrgTerms
from .quota_limiting import QuotaResource

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
    """Post each alert to its organization's alerts channels (or log it); return where each went."""
    from products.accounts.models import Organization

    names = dict(Organization.objects.filter(pk__in=[a.organization_id for a in alerts]).values_list("pk", "name"))
    integrations = _integrations_with_alerts_channel([a.organization_id for a in alerts])
    delivered: dict[int, list[str]] = {}
    for alert in alerts:
        text = alert_text(alert, names.get(alert.organization_id, f"Organization #{alert.organization_id}"))
        targets = integrations.get(alert.organization_id, [])
        if not targets:
            logger.warning("usage alert (no Slack alerts channel configured) org=%s: %s", alert.organization_id, text)
            delivered[alert.organization_id] = ["log"]
            continue
        for integration in targets:
            channel = integration.alerts_channel
            try:
                from products.slack_app.slack_client import get_slack_client

                get_slack_client(integration).chat_postMessage(channel=channel, text=text)
                delivered.setdefault(alert.organization_id, []).append(channel)
            except Exception:
                logger.exception("could not post the usage alert for org %s to %s", alert.organization_id, channel)
                delivered.setdefault(alert.organization_id, []).append(f"failed: {channel}")
    return delivered


def _integrations_with_alerts_channel(org_ids: list[int]) -> dict[int, list]:
    """Return {organization_id: [Slack integrations with an alerts channel]}, one per workspace and channel."""
    try:
        from products.slack_app.models import Integration
    except ImportError:  # the Slack app is not installed: log only
        return {}
    result: dict[int, list] = {}
    seen: set[tuple[int, str, str]] = set()
    for integration in Integration.objects.filter(project__organization_id__in=org_ids).select_related("project"):
        channel = integration.alerts_channel
        org_id = integration.project.organization_id
        key = (org_id, integration.integration_id, channel or "")
        if channel and key not in seen:
            seen.add(key)
            result.setdefault(org_id, []).append(integration)
    return result
