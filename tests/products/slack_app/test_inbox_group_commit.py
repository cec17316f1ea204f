"""The webhook's rows recorded at the same moment share one commit (inbox.record on PostgreSQL, outside a transaction).

Invariants: batching never loses, duplicates or mis-attributes a row: each event is one
row carrying its first submitter's fields, exactly one submitter of an event is told it
created it, and every submitter of a duplicate reads the action on record; a batch the
database cannot write fails every request of that batch with a 503 and writes none of
it; a row the database refuses for its own reason fails its own request only.

To make a batch happen for sure, the first writer is held: the test's connection has an
uncommitted row with the key that writer inserts, so PostgreSQL makes it wait while the
other requests queue behind it; they are then written together.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.backends.signals import connection_created
from django.test import Client

from products.slack_app import inbox
from products.slack_app.inbox_models import MentionInbox

from .conftest import TEAM_ID, mention_envelope, post_event

pytestmark = pytest.mark.django_db(transaction=True)

Action = MentionInbox.Action


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """The size of every batch the process writes (the real writer, observed)."""
    sizes: list[int] = []
    write = inbox._group_commit._write

    def observed(rows):
        sizes.append(len(rows))
        return write(rows)

    monkeypatch.setattr(inbox._group_commit, "_write", observed)
    return sizes


def fields(integration, event_id: str, *, action: str = Action.START, user: str = "U1", integration_id: int | None = None):
    return dict(
        integration_id=integration.id if integration_id is None else integration_id, action=action,
        slack_team_id=TEAM_ID, event_id=event_id, workflow_id=f"wf-{event_id}",
        event={"type": "app_mention", "user": user}, channel="C1", thread_ts="1.1", user=user,
    )


def run_threads(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call on a thread of its own (each with its own database connection); return results or errors, in order."""
    outcomes: list[object] = [None] * len(calls)

    def one(n: int) -> None:
        try:
            outcomes[n] = calls[n]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    return outcomes


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@contextlib.contextmanager
def first_writer_held(integration, *, action_on_record: str = Action.DENY_OVER_QUOTA) -> Iterator[dict]:
    """Start one `record()` whose write waits on an uncommitted row of the test's own; inside the block,
    requests queue behind it. On leaving, the row is committed and the writer carries on (its event a duplicate)."""
    held: dict = {}
    with transaction.atomic():
        MentionInbox.objects.create(**fields(integration, "EvHELD", action=action_on_record, user="UTEST"))

        def record_held():
            held["recorded"] = inbox.record(**fields(integration, "EvHELD", user="UHELD"))
            connection.close()

        writer = threading.Thread(target=record_held)
        writer.start()
        wait_until(lambda: inbox._group_commit._writing and not inbox._group_commit._queue)  # it took its batch
        yield held
    writer.join(30)
    assert held["recorded"] == inbox.Recorded(created=False, action=action_on_record)


def wait_for_queue(n: int) -> None:
    wait_until(lambda: len(inbox._group_commit._queue) == n)


def record_behind_held_writer(integration, calls: list) -> list[object]:
    """Run `calls` in threads while the first writer is held, so all of them queue into one batch; their outcomes, in order."""
    outcomes: list[object] = []
    with first_writer_held(integration):
        runner = threading.Thread(target=lambda: outcomes.extend(run_threads(calls)))
        runner.start()
        wait_for_queue(len(calls))
    runner.join(60)
    return outcomes


def test_distinct_and_duplicate_events_recorded_at_once_are_one_row_each_told_to_the_right_submitter(integration, batch_sizes):
    events = [f"EvBATCH{n:02d}" for n in range(8)]
    # Each event twice, with different fields (user) and actions, so the row shows whose fields were written.
    calls = []
    for event_id in events:
        for copy, action in ((0, Action.START), (1, Action.DENY_OVER_QUOTA)):
            calls.append(lambda e=event_id, c=copy, a=action: inbox.record(**fields(integration, e, action=a, user=f"U{e}{c}")))
    outcomes = record_behind_held_writer(integration, calls)

    assert batch_sizes == [1, len(calls)]  # the held writer alone, then everything that queued behind it, at once
    rows = {row.event_id: row for row in MentionInbox.objects.exclude(event_id="EvHELD")}
    assert sorted(rows) == events
    for n, event_id in enumerate(events):
        pair = outcomes[2 * n : 2 * n + 2]
        assert all(isinstance(r, inbox.Recorded) for r in pair), pair
        assert sorted(r.created for r in pair) == [False, True]  # one creator, one duplicate
        creator = 0 if pair[0].created else 1
        row = rows[event_id]
        assert row.user == f"U{event_id}{creator}" and row.workflow_id == f"wf-{event_id}"
        assert row.action == (Action.START, Action.DENY_OVER_QUOTA)[creator]
        assert [r.action for r in pair] == [row.action, row.action]  # the duplicate reads the action on record
        assert row.event["user"] == row.user and row.state == "pending"


def test_a_batch_the_database_cannot_write_answers_503_to_every_request_of_it_and_writes_none_of_it(integration, batch_sizes):
    def short_lock_timeout(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '1500ms'")

    envelopes = [mention_envelope() for _ in range(6)]
    connection_created.connect(short_lock_timeout)
    try:
        answers: list[object] = []
        with transaction.atomic():
            with connection.cursor() as cursor:  # nobody may write the inbox until this transaction ends
                cursor.execute(f"LOCK TABLE {MentionInbox._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            first = threading.Thread(target=lambda: answers.extend(run_threads([lambda: post_event(Client(), envelopes[0])])))
            first.start()
            wait_until(lambda: inbox._group_commit._writing and not inbox._group_commit._queue)
            rest = threading.Thread(
                target=lambda: answers.extend(run_threads([lambda e=e: post_event(Client(), e) for e in envelopes[1:]]))
            )
            rest.start()
            wait_for_queue(len(envelopes) - 1)
            first.join(30)
            rest.join(30)  # both batches ran into the lock timeout while the lock was held
    finally:
        connection_created.disconnect(short_lock_timeout)

    assert batch_sizes == [1, len(envelopes) - 1]
    assert [(a.status_code, a.json()["error"]) for a in answers] == [(503, "temporarily_unavailable")] * len(envelopes)
    assert not MentionInbox.objects.exists()
    # Slack delivers again: each is recorded once now.
    assert sorted(post_event(Client(), e).json()["outcome"] for e in envelopes) == ["started"] * len(envelopes)
    assert MentionInbox.objects.count() == len(envelopes)


def test_a_row_the_database_refuses_fails_its_own_request_only(integration, batch_sizes):
    good = [f"EvGOOD{n}" for n in range(5)]
    calls = [lambda e=e: inbox.record(**fields(integration, e)) for e in good]
    calls.insert(2, lambda: inbox.record(**fields(integration, "EvORPHAN", integration_id=integration.id + 1000)))
    outcomes = record_behind_held_writer(integration, calls)

    assert batch_sizes == [1, len(calls)]
    assert isinstance(outcomes[2], IntegrityError)  # the integration is gone: its own request fails (a 500; Slack retries)
    assert [o for n, o in enumerate(outcomes) if n != 2] == [inbox.Recorded(created=True, action=Action.START)] * len(good)
    assert sorted(MentionInbox.objects.exclude(event_id="EvHELD").values_list("event_id", flat=True)) == good


def test_inside_a_transaction_the_row_is_written_in_it_not_by_another_thread(integration, batch_sizes):
    with transaction.atomic():
        assert inbox.record(**fields(integration, "EvATOMIC")).created
        assert MentionInbox.objects.filter(event_id="EvATOMIC").exists()
        transaction.set_rollback(True)
    assert batch_sizes == []
    assert not MentionInbox.objects.exists()



@pytest.mark.sqlite
def test_on_either_database_a_row_is_recorded_once_and_a_redelivery_reads_the_action_on_record(integration):
    """PostgreSQL (through the group commit) and SQLite (make run's embedded database: a plain insert) alike."""
    assert inbox.record(**fields(integration, "EvANYDB")) == inbox.Recorded(created=True, action=Action.START)
    again = inbox.record(**fields(integration, "EvANYDB", action=Action.DENY_OVER_QUOTA, user="U2"))
    assert again == inbox.Recorded(created=False, action=Action.START)
    assert list(MentionInbox.objects.values_list("event_id", "user")) == [("EvANYDB", "U1")]


def test_the_webhooks_insert_becomes_a_prepared_statement_and_still_records_each_row_once(integration, settings):
    """Planning the insert was half of PostgreSQL's CPU per mention: after DATABASE_PREPARE_THRESHOLD
    runs on a connection it is prepared there (pg_prepared_statements is the session's own list)."""
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    for n in range(threshold + 3):
        assert inbox.record(**fields(integration, f"EvPREP{n}")).created
    assert inbox.record(**fields(integration, "EvPREP0")) == inbox.Recorded(created=False, action=Action.START)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%INSERT INTO slack_app_mentioninbox%"])
        prepared = [row[0] for row in cursor.fetchall()]
    assert len(prepared) == 1 and "ON CONFLICT" in prepared[0]
    assert MentionInbox.objects.filter(event_id__startswith="EvPREP").count() == threshold + 3


def test_one_batchs_quota_checks_are_one_redis_read_that_decides_each_row_or_hands_it_back(
    integration, accounts, batch_sizes, redis_db, monkeypatch
):
    """Mentions of cached workspaces are decided by their batch's writer: one round trip for the whole
    batch; a limited project's rows are recorded as denials, the others as starts; a row whose cached
    lookup is no longer current is not written (its request decides it the long way, events.py)."""
    from posthog_app.redis_client import OneRoundTrip
    from products.billing.quota_limiting import QuotaResource, add_limited_tokens
    from products.slack_app.workspaces import WORKSPACES_GENERATION_KEY

    redis_db.set(WORKSPACES_GENERATION_KEY, "g1")
    limited_project = accounts.project()
    add_limited_tokens(QuotaResource.AI_CREDITS, {limited_project.api_token: time.time() + 3600})
    round_trips: list[int] = []
    execute = OneRoundTrip.execute
    monkeypatch.setattr(OneRoundTrip, "execute", lambda self: round_trips.append(len(self._commands)) or execute(self))

    def checked(event_id: str, token: str, generation: bytes):
        check = inbox.QuotaCheck(token, generation, Action.DENY_OVER_QUOTA, 0.25)
        return lambda: inbox.record(**fields(integration, event_id), check=check)

    free, limited = integration.project.api_token, limited_project.api_token
    calls = [
        checked("EvFREE1", free, b"g1"), checked("EvLIM1", limited, b"g1"), checked("EvFREE2", free, b"g1"),
        checked("EvSTALE", free, b"g0"), checked("EvLIM2", limited, b"g1"),
    ]
    outcomes = record_behind_held_writer(integration, calls)

    assert batch_sizes == [1, len(calls)]
    assert round_trips == [1 + 2]  # one read: the generation and each project's score once
    start, deny = inbox.Recorded(True, Action.START), inbox.Recorded(True, Action.DENY_OVER_QUOTA)
    assert outcomes == [start, deny, start, inbox.UNDECIDED, deny]
    recorded = dict(MentionInbox.objects.exclude(event_id="EvHELD").values_list("event_id", "action"))
    assert recorded == {"EvFREE1": Action.START, "EvLIM1": Action.DENY_OVER_QUOTA, "EvFREE2": Action.START,
                        "EvLIM2": Action.DENY_OVER_QUOTA}


def test_quota_checks_redis_cannot_answer_are_handed_back_unwritten(integration, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    check = inbox.QuotaCheck(integration.project.api_token, None, Action.DENY_OVER_QUOTA, 0.25)
    assert inbox.record(**fields(integration, "EvNOREDIS"), check=check) is inbox.UNDECIDED
    assert not MentionInbox.objects.exists()
