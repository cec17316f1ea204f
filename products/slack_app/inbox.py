"""The mention inbox's operations: record (the webhook), claim and settle (the relay), backlog and prune (operators).

The webhook calls `record()` and answers; everything that needs Temporal or Slack is the
relay's (`relay.py`). Contracts:

* Table `slack_app_mentioninbox` (`MentionInbox`), unique on (slack_team_id, event_id).
* NOTIFY channel `slack_mention_inbox` (PostgreSQL only), sent in the transaction that
  inserts a row, so a listener hears it once the row is committed (and visible).
* Claiming takes the oldest pending rows that are due and not leased, with
  `FOR UPDATE SKIP LOCKED` (relays never wait on, nor take, each other's rows), and
  leases them for `SLACK_INBOX_RELAY_LEASE_SECONDS`. The Temporal start and the Slack post
  happen after that commit, never inside a transaction; a relay that dies leaves a lease
  that expires, and the next relay's start of the same workflow id is a no-op.

SQLite (`make run`'s embedded default) has no NOTIFY and no row locks: one relay polls,
and SQLite's single writer serialises the claims.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from .inbox_models import MentionInbox

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "slack_mention_inbox"

Action = MentionInbox.Action
State = MentionInbox.State


def uses_notify() -> bool:
    """True when the database can LISTEN/NOTIFY (PostgreSQL)."""
    return connection.vendor == "postgresql"


# --- The webhook -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    created: bool  # False: Slack delivered this event before; nothing was written now
    action: str  # the action on record for the event (the first delivery's decision)


def record(
    *,
    integration_id: int,
    action: str,
    slack_team_id: str,
    event_id: str,
    workflow_id: str,
    event: dict[str, Any],
    channel: str,
    thread_ts: str,
    user: str,
) -> Recorded:
    """Write one row for the event (and NOTIFY the relays on commit); a redelivery writes nothing.

    On PostgreSQL this is one statement (insert, skip on conflict, notify if inserted): one
    round trip in the webhook's path. Raises django.db.OperationalError / InterfaceError when
    the database cannot be reached (the webhook answers 503: Slack delivers again).
    """
    fields = dict(
        integration_id=integration_id,
        action=action,
        slack_team_id=slack_team_id,
        event_id=event_id,
        workflow_id=workflow_id,
        event=event,
        channel=channel,
        thread_ts=thread_ts,
        user=user,
    )
    created = _insert_and_notify(fields) if uses_notify() else _insert(fields)
    if created:
        return Recorded(created=True, action=action)
    existing = MentionInbox.objects.filter(slack_team_id=slack_team_id, event_id=event_id).values_list("action", flat=True).first()
    if existing is None:  # not a redelivery after all (the integration vanished meanwhile)
        raise IntegrityError(f"could not record {workflow_id}")
    return Recorded(created=False, action=existing)


_INSERT_AND_NOTIFY = f"""
WITH inserted AS (
    INSERT INTO {MentionInbox._meta.db_table}
        (slack_team_id, event_id, integration_id, action, workflow_id, event, channel, thread_ts, "user",
         state, received_at, attempts, next_attempt_at, result, last_error)
    VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, 0, %s, '', '')
    ON CONFLICT (slack_team_id, event_id) DO NOTHING
    RETURNING id
)
SELECT id, pg_notify(%s, '') FROM inserted
"""


def _insert_and_notify(fields: dict[str, Any]) -> bool:
    now = timezone.now()
    params = [
        fields["slack_team_id"], fields["event_id"], fields["integration_id"], fields["action"], fields["workflow_id"],
        json.dumps(fields["event"]), fields["channel"], fields["thread_ts"], fields["user"], State.PENDING, now, now,
        NOTIFY_CHANNEL,
    ]
    with _server_binding_cursor() as cursor:
        cursor.execute(_INSERT_AND_NOTIFY, params)
        return cursor.fetchone() is not None


def _server_binding_cursor():
    """`connection.cursor()`, but sending the parameters apart from the statement (psycopg's `Cursor`).

    Django's default (`ClientCursor`) quotes every parameter into the SQL text in Python; for
    the webhook's 13-parameter insert that was about a third of the statement's CPU in the
    web process. No prepared statement is kept (Django keeps them off for connection
    poolers); errors are Django's, and the statement is logged and counted as any other.
    """
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _insert(fields: dict[str, Any]) -> bool:
    """The portable path (SQLite, `make run`'s embedded default): no NOTIFY, the relay polls."""
    try:
        with transaction.atomic():
            MentionInbox.objects.create(**fields)
        return True
    except IntegrityError:
        return False


# --- The relay -----------------------------------------------------------------------------------


def claim(limit: int, lease_seconds: float) -> list[MentionInbox]:
    """Lease up to `limit` due pending rows, oldest first, that no live relay holds; return them in that order."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            MentionInbox.objects.select_for_update(skip_locked=True)
            .filter(state=State.PENDING, next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        MentionInbox.objects.filter(id__in=ids).update(claimed_until=now + timedelta(seconds=lease_seconds))
    return list(MentionInbox.objects.filter(id__in=ids).select_related("integration__project").order_by("id"))


def settle(rows: list[MentionInbox], result: str) -> None:
    """Mark `rows` done with `result` ("started", "already_started", "posted", "not_posted")."""
    if rows:
        MentionInbox.objects.filter(id__in=[r.id for r in rows]).update(
            state=State.DONE, result=result, processed_at=timezone.now(), claimed_until=None
        )


def release(rows: list[MentionInbox]) -> None:
    """Give the rows back untouched (an outage: it is not their fault, so no attempt is counted)."""
    if rows:
        MentionInbox.objects.filter(id__in=[r.id for r in rows]).update(claimed_until=None)


def retry_later(row: MentionInbox, error: str, delay_seconds: float) -> bool:
    """Count a failed attempt on `row` and make it due again after `delay_seconds`; after
    `SLACK_INBOX_MAX_ATTEMPTS` mark it failed instead. Returns True if it will be retried."""
    attempts = row.attempts + 1
    now = timezone.now()
    if attempts >= settings.SLACK_INBOX_MAX_ATTEMPTS:
        MentionInbox.objects.filter(pk=row.pk).update(
            state=State.FAILED, attempts=attempts, last_error=error[:2000], processed_at=now, claimed_until=None, result="failed"
        )
        logger.error("slack inbox: %s %s failed for good after %d attempts: %s", row.action, row.workflow_id, attempts, error)
        return False
    MentionInbox.objects.filter(pk=row.pk).update(
        attempts=F("attempts") + 1,
        last_error=error[:2000],
        next_attempt_at=now + timedelta(seconds=delay_seconds),
        claimed_until=None,
    )
    return True


# --- Operators -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_age_seconds: float | None  # None: nothing pending
    failed: int

    def log_line(self) -> str:
        """The worker's periodic log line (a contract: operators alert on it)."""
        age = "-" if self.oldest_pending_age_seconds is None else f"{self.oldest_pending_age_seconds:.1f}"
        return f"slack inbox backlog: pending={self.pending} oldest_pending_age_s={age} failed={self.failed}"


def backlog() -> Backlog:
    """How many mentions wait for the relay, how long the oldest has waited, how many failed for good."""
    pending = MentionInbox.objects.filter(state=State.PENDING).aggregate(n=Count("id"), oldest=Min("received_at"))
    failed = MentionInbox.objects.filter(state=State.FAILED).count()
    age = None
    if pending["oldest"] is not None:
        age = max(0.0, (timezone.now() - pending["oldest"]).total_seconds())
    return Backlog(pending=pending["n"], oldest_pending_age_seconds=age, failed=failed)


def prune(older_than_seconds: float | None = None) -> int:
    """Delete processed (done or failed) rows older than `older_than_seconds` (default
    `SLACK_INBOX_KEEP_PROCESSED_SECONDS`); return how many. Pending rows are never pruned."""
    keep = settings.SLACK_INBOX_KEEP_PROCESSED_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=keep)
    deleted, _ = MentionInbox.objects.filter(~Q(state=State.PENDING), processed_at__lt=cutoff).delete()
    if deleted:
        logger.info("slack inbox: pruned %d processed rows older than %s", deleted, cutoff.isoformat())
    return deleted
