"""The mention inbox's operations: record (the webhook), claim and settle (the relay), backlog and prune (operators).

The webhook calls `record()` and answers; everything that needs Temporal or Slack is the
relay's (`relay.py`). Contracts:

* Table `slack_app_mentioninbox` (`MentionInbox`), unique on (slack_team_id, event_id).
* No NOTIFY: the relays poll (`SLACK_INBOX_RELAY_POLL_SECONDS`, 0.1 s by default). A
  NOTIFY in the webhook's transaction took PostgreSQL's database-wide notification lock
  until its commit was flushed, so every recording transaction queued behind the previous
  one's flush, and it woke the listening relay for every batch of one or two rows, whose
  claim and settle commits took flushes of their own: with the worker draining a burst,
  the webhook acknowledged 953 -> 1232 mentions/s without it (bench/slack_webhook.py, one
  run each). An idle relay's poll finds nothing and writes nothing.
* On PostgreSQL, outside a transaction, the rows that request threads of one process
  record at the same moment are written together (`group_commit.py`): one statement,
  one commit; each `record()` returns once its own row is committed, and a database
  error fails every `record()` of that batch (nothing of it is acknowledged).
* A mention of a workspace this process has looked up already may be recorded with a
  `QuotaCheck` instead of a decided action: the batch's writer then reads, in one Redis
  round trip for the whole batch, the workspaces' generation and every project's quota
  score, and records each such row with the action its check gives. A row whose lookup is
  no longer current (the generation moved) or whose check Redis did not answer is not
  written: `record()` returns `UNDECIDED` and the caller decides it the long way
  (events.py). Each request then waits for one batch, not for a Redis read and then a
  batch (bench/slack_webhook.py, worker draining, same machine: 535-619 -> 738 acks/s, one run each).
* Claiming takes the oldest pending rows that are due and not leased, with
  `FOR UPDATE SKIP LOCKED` (relays never wait on, nor take, each other's rows), and
  leases them for `SLACK_INBOX_RELAY_LEASE_SECONDS`. The Temporal start and the Slack post
  happen after that commit, never inside a transaction; a relay that dies leaves a lease
  that expires, and the next relay's start of the same workflow id is a no-op.

SQLite (`make run`'s embedded default) has no row locks: SQLite's single writer
serialises the relays' claims.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone
import redis

from posthog_app.redis_client import OneRoundTrip
from products.billing.facade import QuotaResource, queue_team_limited, team_limited_from

from .group_commit import GroupCommit
from .inbox_models import MentionInbox
from .workspaces import WORKSPACES_GENERATION_KEY

logger = logging.getLogger(__name__)

Action = MentionInbox.Action
State = MentionInbox.State


def _writes_in_sql() -> bool:
    """True on PostgreSQL: the insert is one `ON CONFLICT DO NOTHING` statement, grouped across threads."""
    return connection.vendor == "postgresql"


# --- The webhook -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaCheck:
    """The quota read a row's action waits for, made by its batch's writer (see the module docstring).

    The row is recorded with `action_if_limited` when the project of `api_token` is over
    its AI credits, else with the action given to `record()`, but only while the
    workspaces' generation is still `generation` (the one the caller's cached lookup was made under).
    """

    api_token: str
    generation: bytes | None
    action_if_limited: str
    timeout: float


class _Undecided:
    def __repr__(self) -> str:
        return "UNDECIDED"


# `record()`'s answer when its QuotaCheck could not decide the row (nothing was written).
UNDECIDED: Any = _Undecided()


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
    check: QuotaCheck | None = None,
) -> Recorded:
    """Write one row for the event; a redelivery writes nothing.

    On PostgreSQL this is one statement (insert, skip on conflict): one
    round trip in the webhook's path, shared with the rows other threads of the process
    record at the same moment when not inside a transaction (see the module docstring).
    Returns once the row is committed (or, inside a transaction, written in it). Raises
    django.db.OperationalError / InterfaceError when the database cannot be reached (the
    webhook answers 503: Slack delivers again). With `check`, the action recorded is the
    check's (see `QuotaCheck`), or nothing is written and `UNDECIDED` is returned.
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
    row = _Row(fields, timezone.now(), check)
    if not _writes_in_sql() or connection.in_atomic_block:
        # SQLite, or the caller's transaction (its commit is the caller's): this thread writes its row alone.
        created = _write_batch([row])[0]
        if isinstance(created, BaseException):
            raise created
    else:
        created = _group_commit.submit(row)
    if created is UNDECIDED:
        return UNDECIDED
    if created:
        return Recorded(created=True, action=row.fields["action"])
    existing = MentionInbox.objects.filter(slack_team_id=slack_team_id, event_id=event_id).values_list("action", flat=True).first()
    if existing is None:  # not a redelivery after all (the integration vanished meanwhile)
        raise IntegrityError(f"could not record {workflow_id}")
    return Recorded(created=False, action=existing)


def _insert_one(fields: dict[str, Any], received_at: datetime | None = None) -> bool:
    with _server_binding_cursor() as cursor:
        cursor.execute(_batch_statement(1), _row_params(fields, received_at or timezone.now()))
        return cursor.fetchone() is not None


def _row_params(fields: dict[str, Any], now: datetime) -> list[Any]:
    return [
        fields["slack_team_id"], fields["event_id"], fields["integration_id"], fields["action"], fields["workflow_id"],
        json.dumps(fields["event"]), fields["channel"], fields["thread_ts"], fields["user"], State.PENDING, now, now,
    ]


# --- Group commit (PostgreSQL, autocommit) ---------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    fields: dict[str, Any]
    received_at: datetime  # when its request recorded it, not when its batch was written
    check: QuotaCheck | None = None  # None: `fields["action"]` is decided already

    @property
    def key(self) -> tuple[str, str]:
        return self.fields["slack_team_id"], self.fields["event_id"]


_ROW_VALUES = "(%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, 0, %s, '', '')"


@functools.lru_cache(maxsize=128)
def _batch_statement(n: int) -> str:
    """The insert of `n` rows, skipping those recorded already, returning the keys of the rows inserted."""
    return f"""
INSERT INTO {MentionInbox._meta.db_table}
    (slack_team_id, event_id, integration_id, action, workflow_id, event, channel, thread_ts, "user",
     state, received_at, attempts, next_attempt_at, result, last_error)
VALUES {", ".join([_ROW_VALUES] * n)}
ON CONFLICT (slack_team_id, event_id) DO NOTHING
RETURNING slack_team_id, event_id
"""


def _write_batch(rows: Sequence[_Row]) -> list[Any]:
    """Decide the rows that wait for a QuotaCheck (one Redis round trip), then insert the decided ones.

    Per row: whether it was created, an exception, or UNDECIDED (not written). A row's
    fields are its own request's (never shared), so its decided action is written into them.
    """
    checked = [row for row in rows if row.check is not None]
    if not checked:
        return _insert_rows(rows)
    limited = _read_quota_checks([row.check for row in checked])  # type: ignore[misc]
    undecided: set[int] = set()
    for row, is_limited in zip(checked, limited):
        if is_limited is None:
            undecided.add(id(row))
        elif is_limited:
            row.fields["action"] = row.check.action_if_limited  # type: ignore[union-attr]
    decided = [row for row in rows if id(row) not in undecided]
    written = iter(_insert_rows(decided) if decided else [])
    return [UNDECIDED if id(row) in undecided else next(written) for row in rows]


def _read_quota_checks(checks: Sequence[QuotaCheck]) -> list[bool | None]:
    """Per check: is its project limited (billing's rule, `team_limited_from`), or None when it cannot say
    (the generation moved since its lookup, or Redis did not answer within its timeout)."""
    tokens = list(dict.fromkeys(check.api_token for check in checks))
    try:
        pipe = OneRoundTrip(min(check.timeout for check in checks))
        pipe.get(WORKSPACES_GENERATION_KEY)
        for token in tokens:
            queue_team_limited(pipe, token, QuotaResource.AI_CREDITS)
        replies = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("quota read for %d mentions failed (%s); each is decided on its own", len(checks), exc)
        return [None] * len(checks)
    generation, scores = replies[0], dict(zip(tokens, replies[1:]))
    return [team_limited_from(scores[check.api_token]) if check.generation == generation else None for check in checks]


def _insert_rows(rows: Sequence[_Row]) -> list[bool | BaseException]:
    """Insert decided rows: on PostgreSQL in one statement (`_insert_batch`), on SQLite one by one."""
    if _writes_in_sql():
        return _insert_batch(rows)
    outcomes: list[bool | BaseException] = []
    for row in rows:
        try:
            outcomes.append(_insert(row.fields))
        except Exception as exc:  # noqa: BLE001 - its own request raises it
            outcomes.append(exc)
    return outcomes


def _insert_batch(rows: Sequence[_Row]) -> list[bool | BaseException]:
    """Insert `rows` in one autocommit statement (one commit); return, per row, whether it was created.

    Runs on the connection of whichever request thread writes the batch. A row delivered
    twice within the batch is inserted once and created for its first submitter only. The
    rows go in key order, so two processes writing overlapping batches lock the same keys
    in the same order (no deadlock). The database unreachable fails the whole batch (its
    submitters answer 503); any other database error (say, a row whose integration was
    deleted meanwhile) is attributed to its own row by writing the rows one by one.
    """
    first_of: dict[tuple[str, str], _Row] = {}
    for row in rows:
        first_of.setdefault(row.key, row)
    unique = [first_of[key] for key in sorted(first_of)]
    params: list[Any] = []
    for row in unique:
        params += _row_params(row.fields, row.received_at)
    try:
        with _server_binding_cursor() as cursor:
            cursor.execute(_batch_statement(len(unique)), params)
            inserted = {(team, event) for team, event in cursor.fetchall()}
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        if len(unique) == 1:
            raise
        return [_insert_alone(row) for row in rows]
    return [row.key in inserted and first_of[row.key] is row for row in rows]


def _insert_alone(row: _Row) -> bool | BaseException:
    try:
        return _insert_one(row.fields, row.received_at)
    except Exception as exc:
        return exc


# gunicorn's gthread workers run up to --threads requests per process at once: a batch is rarely larger.
_group_commit: GroupCommit[_Row, Any] = GroupCommit(_write_batch, max_batch=100)


def _server_binding_cursor():
    """`connection.cursor()`, but sending the parameters apart from the statement (psycopg's `Cursor`).

    Django's default (`ClientCursor`) quotes every parameter into the SQL text in Python; for
    the webhook's 13-parameter insert that was about a third of the statement's CPU in the
    web process. psycopg prepares the statement on the connection once it has run
    `DATABASE_PREPARE_THRESHOLD` times there (settings.py: about half of PostgreSQL's CPU per
    row was planning it); errors are Django's, and the statement is logged and counted as any other.
    """
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = ServerBindingCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _insert(fields: dict[str, Any]) -> bool:
    """The portable path (SQLite, `make run`'s embedded default): the ORM's insert in a transaction of its own."""
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
